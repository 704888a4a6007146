"""Hosts: volume references, registration rules, the heartbeat, routing of jobs to the
host's own queue, beat's fan-out, and the Hosts page's permissions."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from hosts import refs
from hosts.heartbeat import beat_once
from hosts.models import Host, host_online
from hosts.services import host_save
from jobs.models import Job
from jobs.services import job_create
from project.errors import Refused

# --- references (pure) ----------------------------------------------------------------


def test_a_default_host_volume_keeps_its_plain_name_and_others_get_their_host_prefix():
    assert refs.make_ref("local", "pgdata") == "pgdata" and refs.split_ref("pgdata") == ("local", "pgdata")
    assert refs.make_ref("e1", "pgdata") == "e1:pgdata" and refs.split_ref("e1:pgdata") == ("e1", "pgdata")
    assert refs.queue_for("local") == settings.CELERY_TASK_DEFAULT_QUEUE
    assert refs.queue_for("e1") == f"{settings.CELERY_TASK_DEFAULT_QUEUE}.host.e1"


def test_the_engine_adapter_refuses_a_volume_of_another_host(monkeypatch):
    monkeypatch.setenv("CARGOHOLD_WORKER_HOST", "e1")
    assert refs.engine_name("e1:pgdata") == "pgdata" and refs.from_engine("pgdata") == "e1:pgdata"
    with pytest.raises(refs.WrongHost, match="host_worker --host local"):
        refs.engine_name("pgdata")


def test_online_means_a_fresh_heartbeat_and_no_stop_after_it():
    now = timezone.now()
    fresh, old = now - timedelta(seconds=5), now - timedelta(seconds=settings.HOST_OFFLINE_SECONDS + 1)
    assert host_online(fresh, None, now=now)
    assert not host_online(old, None, now=now)
    assert not host_online(None, None, now=now)
    assert not host_online(fresh, fresh + timedelta(seconds=1), now=now)  # said it stopped
    assert host_online(fresh, fresh - timedelta(seconds=60), now=now)  # started again since


# --- registration ---------------------------------------------------------------------


def _pki(tmp_path):
    """A CA, and a client certificate and key it signed (openssl, as an Admin would)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "c.csr", "-subj", "/CN=client")
    run("x509", "-req", "-in", "c.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "cert.pem", "-days", "2")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.pem", "-out", "o.csr", "-subj", "/CN=other")
    return {n: (tmp_path / f"{n}.pem").read_text() for n in ("ca", "cert", "key", "other")}


@pytest.mark.django_db
def test_a_tcp_engine_is_registered_only_with_a_matching_tls_client_certificate(tmp_path):
    pem = _pki(tmp_path)
    with pytest.raises(Refused, match="only with TLS"):
        host_save(name="e9", url="tcp://10.0.0.9:2376")
    with pytest.raises(Refused, match="not a PEM certificate"):
        host_save(name="e9", url="tcp://10.0.0.9:2376", ca_pem="nope", cert_pem=pem["cert"], key_pem=pem["key"])
    with pytest.raises(Refused, match="does not belong"):
        host_save(name="e9", url="tcp://10.0.0.9:2376", ca_pem=pem["ca"], cert_pem=pem["cert"], key_pem=pem["other"])
    assert not Host.objects.filter(name="e9", url__startswith="tcp").exists()

    host, created = host_save(name="e9", url="tcp://10.0.0.9:2376", ca_pem=pem["ca"], cert_pem=pem["cert"],
                              key_pem=pem["key"])
    assert created or host.url == "tcp://10.0.0.9:2376"
    row = Host.objects.get(name="e9")
    assert "PRIVATE KEY" not in row.tls_client_key_enc and row.client_key() == pem["key"].strip()
    # The key is write-only: saving again without one keeps it.
    host_save(name="e9", url="tcp://10.0.0.9:2376", description="rack 2")
    assert Host.objects.get(name="e9").client_key() == pem["key"].strip()


@pytest.mark.django_db
@pytest.mark.parametrize("url, problem", [
    ("http://10.0.0.9:2375", "must be blank"),
    ("tcp://10.0.0.9", "must be blank"),
    ("tcp://10.0.0.9:99999", "between 1 and 65535"),
    ("ssh://root@db1;rm -rf /", "must be blank"),
    ("unix:///run/../etc/x sock", "must be blank"),
])
def test_a_bad_address_is_refused_and_nothing_is_saved(url, problem):
    with pytest.raises(Refused, match=problem):
        host_save(name="e8", url=url)
    assert not Host.objects.filter(name="e8").exists()


@pytest.mark.django_db
def test_names_and_the_default_host_are_checked():
    with pytest.raises(Refused, match="name"):
        host_save(name="E 1", url="")
    with pytest.raises(Refused, match="default one"):
        host_save(name=refs.default_host_name(), url="ssh://deploy@db1")
    host, _ = host_save(name="db1", url="ssh://deploy@db1:2222")
    assert host.connection_text == "ssh://deploy@db1:2222"


# --- the heartbeat and routing ---------------------------------------------------------


@pytest.mark.django_db
def test_the_heartbeat_marks_the_worker_host_online(monkeypatch):
    Host.objects.create(name="e7")
    monkeypatch.setenv("CARGOHOLD_WORKER_HOST", "e7")
    beat_once(started=True)
    host = Host.objects.get(name="e7")
    assert host.online and host.worker_started_at and host.worker_name


@pytest.mark.django_db
def test_the_heartbeat_of_an_unregistered_host_does_not_register_it(monkeypatch):
    monkeypatch.setenv("CARGOHOLD_WORKER_HOST", "gone1")
    beat_once(started=True)
    assert not Host.objects.filter(name="gone1").exists()
    monkeypatch.delenv("CARGOHOLD_WORKER_HOST")
    Host.objects.filter(name=refs.default_host_name()).delete()
    beat_once()
    assert Host.objects.get(name=refs.default_host_name()).online  # the default host is made on first use


@pytest.mark.django_db
def test_a_job_goes_to_the_queue_of_its_volume_host():
    job = job_create(kind="backup", target="e1:pgdata", enqueue=False)
    assert job.host == "e1"
    assert job_create(kind="backup", target="pgdata", enqueue=False).host == refs.default_host_name()
    assert job_create(kind="repository_check", target="offsite", target_type="repository",
                      enqueue=False).host == refs.default_host_name()


def _queue_length(name: str) -> int:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(name)


@pytest.mark.django_db
def test_a_job_of_another_host_is_not_run_here_but_sent_on_to_its_queue():
    from jobs.runner import _claim

    job = job_create(kind="backup", target="e5:pgdata", enqueue=False)
    queue = refs.queue_for("e5")
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
    assert _claim(job.pk) is None
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and not job.worker
    assert _queue_length(queue) == 1
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


@pytest.mark.django_db
def test_beat_sends_engine_work_to_the_default_host_and_each_online_host_only():
    from hosts.tasks import on_every_host

    now = timezone.now()
    Host.objects.create(name="e3", heartbeat_at=now)
    Host.objects.create(name="e4", heartbeat_at=now - timedelta(hours=1))
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(refs.queue_for("e3"), refs.queue_for("e4"))
    try:
        sent = on_every_host("volumes.tasks.sync_mirror")
        assert sent == sorted([refs.default_host_name(), "e3"])
        assert _queue_length(refs.queue_for("e3")) == 1 and _queue_length(refs.queue_for("e4")) == 0
    finally:
        client.delete(refs.queue_for("e3"), refs.queue_for("e4"))


# --- the Hosts page -------------------------------------------------------------------


@pytest.mark.django_db
def test_everyone_sees_the_hosts_but_only_admins_see_connections_and_register(client_for, tmp_path):
    pem = _pki(tmp_path)
    host_save(name="e6", url="tcp://10.0.0.6:2376", ca_pem=pem["ca"], cert_pem=pem["cert"], key_pem=pem["key"])
    viewer = client_for("Viewer").get("/hosts/").content.decode()
    assert 'data-host="e6"' in viewer and "10.0.0.6" not in viewer
    assert client_for("Operator").get("/hosts/new/").status_code == 403
    assert client_for("Operator").post("/hosts/new/", {"name": "e7"}).status_code == 403
    assert not Host.objects.filter(name="e7").exists()

    admin = client_for("Admin")
    assert "10.0.0.6" in admin.get("/hosts/").content.decode()
    edit = admin.get("/hosts/e6/edit/").content.decode()
    assert "PRIVATE KEY" not in edit and "A key is stored" in edit
    response = admin.post("/hosts/new/", {"name": "e7", "url": "tcp://10.0.0.7:2376"})
    assert response.status_code == 400 and "only with TLS" in response.content.decode()
    assert admin.post("/hosts/new/", {"name": "e7", "url": ""}).status_code == 302
    assert Host.objects.filter(name="e7", url="").exists()


@pytest.mark.django_db
def test_the_hosts_page_refuses_a_post_without_csrf(make_user):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(make_user("Admin"))
    assert c.post("/hosts/new/", {"name": "e7"}).status_code == 403
    assert not Host.objects.filter(name="e7").exists()
