"""The API knows hosts (issue 16, item 2): `host` on volumes, containers, backups, restores
and jobs, `?host=` on their lists, and GET /api/v1/hosts/ (never how a worker reaches its
engine). Database only."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from hosts.models import Host
from jobs.models import Job
from restores.models import Restore
from tests.api.conftest import mirror_volume
from tests.backups.conftest import backup_row
from volumes.models import Container, EngineStatus, Mount

pytestmark = pytest.mark.django_db

SECRET_KEY_PEM = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1mb3ItdGVzdHM=\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def two_hosts(db):
    e1 = Host.objects.create(name="e1", url="tcp://127.0.0.1:23760", tls_ca_cert="CA-PEM-PUBLIC",
                             tls_client_cert="CLIENT-CERT-PEM", heartbeat_at=timezone.now(), description="rack 2")
    e1.set_client_key(SECRET_KEY_PEM)
    e1.save()
    EngineStatus.objects.create(host=e1, server_version="27.1.0")
    here, there = mirror_volume("pgdata"), mirror_volume("e1:pgdata", host=e1)
    for name, volume, host in (("web-local", here, None), ("web-e1", there, e1)):
        c = Container.objects.create(engine_id=f"id-{name}", name=name, state="running",
                                     **({"host": host} if host else {}))
        Mount.objects.create(container=c, kind="volume", volume=volume, destination="/data")
    b_here = backup_row(volume_name="pgdata", volume=here, status="succeeded")
    b_there = backup_row(volume_name="e1:pgdata", volume=there, status="succeeded")
    Job.objects.filter(pk=b_there.job_id).update(host="e1")
    Job.objects.filter(pk=b_here.job_id).update(host="local")
    for backup, into in ((b_here, "pgdata-copy"), (b_there, "e1:pgdata-copy")):
        job = Job.objects.create(kind="restore", target=into, status="succeeded", end_handled=True)
        Restore.objects.create(job=job, backup=backup, backup_label="#", mode="new", volume_name=into)
    return {"e1": e1, "b_here": b_here, "b_there": b_there}


def _results(client, url: str) -> list[dict]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.content[:500])
    return response.json()["results"]


def test_volumes_carry_their_host_and_filter_by_it(two_hosts, api_for):
    viewer = api_for("Viewer")
    rows = {v["name"]: (v["host"], v["engine_name"]) for v in _results(viewer, "/api/v1/volumes/")}
    assert rows == {"pgdata": ("local", "pgdata"), "e1:pgdata": ("e1", "pgdata")}
    assert [v["name"] for v in _results(viewer, "/api/v1/volumes/?host=e1")] == ["e1:pgdata"]
    assert viewer.get("/api/v1/volumes/e1:pgdata/").json()["host"] == "e1"


def test_containers_carry_their_host_and_filter_by_it(two_hosts, api_for):
    viewer = api_for("Viewer")
    assert {c["name"]: c["host"] for c in _results(viewer, "/api/v1/containers/")} == {
        "web-local": "local", "web-e1": "e1"}
    assert [c["name"] for c in _results(viewer, "/api/v1/containers/?host=local")] == ["web-local"]


def test_backups_restores_and_jobs_filter_by_host(two_hosts, api_for):
    viewer = api_for("Viewer")
    assert {b["volume_name"]: b["host"] for b in _results(viewer, "/api/v1/backups/")} == {
        "pgdata": "local", "e1:pgdata": "e1"}
    assert [b["id"] for b in _results(viewer, "/api/v1/backups/?host=e1")] == [two_hosts["b_there"].pk]
    assert [r["volume_name"] for r in _results(viewer, "/api/v1/restores/?host=e1")] == ["e1:pgdata-copy"]
    assert [r["host"] for r in _results(viewer, "/api/v1/restores/?host=local")] == ["local"]
    jobs = _results(viewer, "/api/v1/jobs/?host=e1")
    assert [j["id"] for j in jobs] == [two_hosts["b_there"].job_id] and jobs[0]["host"] == "e1"
    assert {j["host"] for j in _results(viewer, "/api/v1/jobs/?host=local")} == {"local"}
    assert viewer.get(f"/api/v1/jobs/{two_hosts['b_there'].job_id}/").json()["host"] == "e1"


def test_hosts_endpoint_lists_state_and_counts_and_never_the_connection(two_hosts, api_for):
    Host.objects.create(name="e2", heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    response = api_for("Viewer").get("/api/v1/hosts/")
    assert response.status_code == 200
    hosts = {h["name"]: h for h in response.json()["results"]}
    assert set(hosts) == {"local", "e1", "e2"}
    e1, e2 = hosts["e1"], hosts["e2"]
    assert (e1["online"], e1["offline_since"], e1["engine_version"], e1["volume_count"]) == (True, None, "27.1.0", 1)
    assert e2["online"] is False and e2["offline_since"] and e2["volume_count"] == 0
    assert hosts["local"]["is_default"] is True and hosts["local"]["volume_count"] == 1
    assert set(e1) == {"name", "description", "is_default", "online", "offline_since", "heartbeat_at",
                       "engine_version", "volume_count"}
    text = json.dumps(response.json())
    for leak in ("tcp://", "23760", "CA-PEM-PUBLIC", "CLIENT-CERT-PEM", "PRIVATE KEY", "c2VjcmV0",
                 two_hosts["e1"].tls_client_key_enc[:20]):
        assert leak not in text


def test_hosts_endpoint_needs_credentials_and_a_role(two_hosts, api_for, client):
    assert client.get("/api/v1/hosts/").status_code in (401, 403)
    assert api_for(None).get("/api/v1/hosts/").status_code == 403


def test_hosts_endpoint_counts_only_the_callers_teams_volumes(two_hosts, api_for, make_user):
    from accounts.models import Team, TeamMembership, TeamRule

    shop_db = mirror_volume("e1:shop-db", host=two_hosts["e1"], labels={"team": "shop"})
    ours = backup_row(volume_name=shop_db.name, volume=shop_db, status="succeeded")
    Job.objects.filter(pk=ours.job_id).update(host="e1")
    shop = Team.objects.create(name="shop")
    TeamRule.objects.create(team=shop, kind="label", value="team=shop")
    user = make_user(None)
    TeamMembership.objects.create(team=shop, user=user, role="Viewer")
    client = api_for(user=user)
    hosts = {h["name"]: h["volume_count"] for h in _results(client, "/api/v1/hosts/")}
    assert hosts == {"local": 0, "e1": 1}
    # The jobs list is scoped too: the other volumes' backup jobs are not theirs.
    assert [j["id"] for j in _results(client, "/api/v1/jobs/?host=e1")] == [ours.job_id]
    assert _results(client, "/api/v1/jobs/?host=local") == []


def test_restore_into_another_host_through_the_api(two_hosts, api_for, monkeypatch):
    monkeypatch.setattr("jobs.services.job_enqueue", lambda **kwargs: None)
    from backups.models import Backup

    Backup.objects.filter(pk=two_hosts["b_here"].pk).update(key="pgdata/b.tar.zst", sha256="a" * 64)
    response = api_for("Operator").post(f"/api/v1/backups/{two_hosts['b_here'].pk}/restore/",
                                        {"volume_name": "e1:pgcopy"}, content_type="application/json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["host"], body["job"]["host"], body["job"]["target"]) == ("e1", "e1", "e1:pgcopy")


def test_schema_documents_the_hosts_endpoint_and_host_filters(api_for):
    schema = api_for("Viewer").get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/hosts/" in schema["paths"] and "/api/v1/jobs/" in schema["paths"]
    host_props = schema["components"]["schemas"]["Host"]["properties"]
    assert not {"url", "tls_ca_cert", "tls_client_cert", "tls_client_key_enc"} & set(host_props)
    for path in ("/api/v1/volumes/", "/api/v1/containers/", "/api/v1/backups/", "/api/v1/restores/", "/api/v1/jobs/"):
        names = {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}
        assert "host" in names, path
