"""Every page shows and filters by host (issue 16, item 2): a Host column and a `?host=`
filter once there is more than the default host, none on a single-host install. Database
only: the second host's rows are made with the ORM, as its worker's sync would make them."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from backups.models import Backup
from hosts.models import Host
from jobs.models import Job
from policies import selection
from policies.models import BackupPolicy
from restores.models import Restore
from tests.restores.conftest import found_job
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = pytest.mark.django_db

HOST_TH = "<th>Host</th>"


def _volume(ref: str, host: Host | None = None, **fields) -> Volume:
    return Volume.objects.create(name=ref, **({"host": host} if host else {}), **fields)


def _container(name: str, volume: Volume, host: Host | None = None, **fields) -> Container:
    c = Container.objects.create(engine_id=f"id-{name}-{volume.pk}", name=name, image="postgres:16", state="running",
                                 **({"host": host} if host else {}), **fields)
    Mount.objects.create(container=c, kind="volume", volume=volume, destination="/var/lib/data")
    return c


def _backup(volume: Volume) -> Backup:
    return Backup.objects.create(
        job=found_job(volume.name), volume=volume, volume_name=volume.name, key=f"{volume.engine_name}/b.tar.zst",
        sha256="a" * 64, size_bytes=100, bytes_read=1024, file_count=3,
        manifest={"volume": {"name": volume.engine_name, "driver": "local", "options": {}, "labels": {},
                             "options_redacted": []}, "archive": {"sha256": "a" * 64}},
    )


def _restore(backup: Backup, into: str) -> Restore:
    job = Job.objects.create(kind="restore", target=into, status="succeeded", end_handled=True)
    return Restore.objects.create(job=job, backup=backup, backup_label=f"#{backup.pk}", mode="new", volume_name=into)


@pytest.fixture
def two_hosts(db):
    """The default host's `pgdata` and host e1's `pgdata` (same engine name, two volumes),
    each with a container, a backup and a restore; e1's worker heard from just now."""
    e1 = Host.objects.create(name="e1", heartbeat_at=timezone.now())
    here = _volume("pgdata", size_bytes=1000)
    there = _volume("e1:pgdata", e1, size_bytes=5000)
    _container("web-local", here)
    _container("web-e1", there, e1)
    b_here, b_there = _backup(here), _backup(there)
    _restore(b_here, "pgdata-copy")
    _restore(b_there, "e1:pgdata-copy")
    return {"e1": e1, "here": here, "there": there, "b_here": b_here, "b_there": b_there}


@pytest.fixture
def one_host(db):
    here = _volume("pgdata", size_bytes=1000)
    _container("web-local", here)
    backup = _backup(here)
    _restore(backup, "pgdata-copy")
    return {"here": here, "b_here": backup}


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def _host_cells(page: str) -> list[str]:
    return re.findall(r'<span class="host-name" data-host="([^"]+)">', page)


# --- a single-host install looks as before --------------------------------------------------


@pytest.mark.parametrize("url", ["/containers/", "/backups/", "/restores/", "/risks/", "/", "/audit/", "/graph/",
                                 "/policies/"])
def test_a_single_host_install_shows_no_host_column_or_filter(one_host, client_for, url):
    page = _page(client_for("Admin"), url)
    assert HOST_TH not in page
    assert 'name="host"' not in page
    assert 'id="hosts-panel"' not in page


def test_a_single_host_backup_page_and_restore_form_name_no_host(one_host, client_for):
    admin = client_for("Admin")
    detail = _page(admin, f"/backups/{one_host['b_here'].pk}/")
    assert "<dt>Host</dt>" not in detail
    form = _page(admin, f"/backups/{one_host['b_here'].pk}/restore/")
    assert 'name="host"' not in form or 'type="hidden"' in form.split('name="host"')[0][-80:]
    assert 'id="restore-host"' not in form


# --- containers ---------------------------------------------------------------------------


def test_containers_list_shows_each_containers_host_and_filters_by_host(two_hosts, client_for):
    viewer = client_for("Viewer")
    page = _page(viewer, "/containers/")
    assert HOST_TH in page
    assert 'data-container="web-local"' in page and 'data-container="web-e1"' in page
    assert sorted(_host_cells(page)) == ["e1", "local"]
    only = _page(viewer, "/containers/?host=e1")
    assert 'data-container="web-e1"' in only and 'data-container="web-local"' not in only
    assert '<option value="e1" selected>' in only
    # The neighbourhood link opens the graph of the container's own host.
    assert "/graph/?container=web-e1&amp;host=e1" in only


def test_containers_list_htmx_partial_keeps_the_host_column(two_hosts, client_for):
    page = client_for("Viewer").get("/containers/?host=local", HTTP_HX_REQUEST="true").content.decode()
    assert HOST_TH in page and 'data-container="web-local"' in page and 'data-container="web-e1"' not in page


# --- backups ------------------------------------------------------------------------------


def test_backups_list_shows_the_volumes_host_and_filters_by_host(two_hosts, client_for):
    viewer = client_for("Viewer")
    page = _page(viewer, "/backups/")
    assert HOST_TH in page
    b_here, b_there = two_hosts["b_here"].pk, two_hosts["b_there"].pk
    assert f'data-backup="{b_here}"' in page and f'data-backup="{b_there}"' in page
    e1 = _page(viewer, "/backups/?host=e1")
    assert f'data-backup="{b_there}"' in e1 and f'data-backup="{b_here}"' not in e1
    local = _page(viewer, "/backups/?host=local")
    assert f'data-backup="{b_here}"' in local and f'data-backup="{b_there}"' not in local
    # An unknown or malformed host filters nothing out rather than erroring.
    assert f'data-backup="{b_here}"' in _page(viewer, "/backups/?host=NOT%20A%20HOST")


def test_backup_page_says_which_host_its_volume_is_on(two_hosts, client_for):
    page = _page(client_for("Viewer"), f"/backups/{two_hosts['b_there'].pk}/")
    assert "<dt>Host</dt>" in page
    host_dd = page.split("<dt>Host</dt>", 1)[1][:300]
    assert 'data-host="e1"' in host_dd


# --- restores -----------------------------------------------------------------------------


def test_restores_list_shows_the_target_host_and_filters_by_host(two_hosts, client_for):
    viewer = client_for("Viewer")
    page = _page(viewer, "/restores/")
    assert HOST_TH in page and sorted(_host_cells(page)) == ["e1", "local"]
    e1 = _page(viewer, "/restores/?host=e1")
    assert _host_cells(e1) == ["e1"]
    assert _host_cells(_page(viewer, "/restores/?host=local")) == ["local"]


@pytest.fixture
def no_enqueue(monkeypatch):
    monkeypatch.setattr("jobs.services.job_enqueue", lambda **kwargs: None)


def test_restore_form_offers_the_target_host_defaulting_to_the_backups_own(two_hosts, client_for):
    form = _page(client_for("Operator"), f"/backups/{two_hosts['b_there'].pk}/restore/")
    assert 'id="restore-host"' in form
    assert '<option value="e1" selected>' in form
    local = _page(client_for("Operator"), f"/backups/{two_hosts['b_here'].pk}/restore/")
    assert '<option value="local" selected>' in local


def test_restore_into_another_host_runs_on_that_hosts_worker(two_hosts, client_for, no_enqueue):
    response = client_for("Operator").post(f"/backups/{two_hosts['b_here'].pk}/restore/",
                                           {"name": "pgcopy", "host": "e1", "driver": "local"})
    assert response.status_code == 302, response.content.decode()[:2000]
    restore = Restore.objects.get(volume_name="e1:pgcopy")
    assert (restore.job.host, restore.job.target, restore.job.target_type) == ("e1", "e1:pgcopy", "volume")
    assert restore.backup_id == two_hosts["b_here"].pk


def test_restore_form_checks_the_name_on_the_target_host(two_hosts, client_for, no_enqueue):
    operator = client_for("Operator")
    backup = two_hosts["b_here"].pk
    taken = operator.post(f"/backups/{backup}/restore/", {"name": "pgdata", "host": "e1", "driver": "local"})
    assert taken.status_code == 400
    assert "already exists on e1" in taken.content.decode()
    assert not Restore.objects.filter(volume_name="e1:pgdata").exists()
    # A name taken on the default host only is free on e1.
    _volume("onlyhere")
    free = operator.post(f"/backups/{backup}/restore/", {"name": "onlyhere", "host": "e1", "driver": "local"})
    assert free.status_code == 302 and Restore.objects.filter(volume_name="e1:onlyhere").exists()
    bad = operator.post(f"/backups/{backup}/restore/", {"name": "e2:x", "host": "e1", "driver": "local"})
    assert bad.status_code == 400 and not Restore.objects.filter(volume_name__contains="x", mode="new").exists()
    unknown = operator.post(f"/backups/{backup}/restore/", {"name": "pgnew", "host": "nowhere", "driver": "local"})
    assert unknown.status_code == 400 and not Restore.objects.filter(volume_name__endswith="pgnew").exists()


def test_restore_command_copies_to_another_host(two_hosts, no_enqueue):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("restore_backup", str(two_hosts["b_here"].pk), "--to", "e1:clicopy", stdout=out, stderr=StringIO())
    job = Job.objects.get(pk=int(out.getvalue().strip()))
    assert (job.host, job.target) == ("e1", "e1:clicopy")


def test_restore_service_refuses_a_target_on_an_unknown_host(two_hosts):
    from project.errors import Refused
    from restores.services import restore_new_start

    with pytest.raises(Refused, match="no host named e9"):
        restore_new_start(backup=two_hosts["b_here"], volume_name="e9:pgnew", trigger="test")
    assert not Job.objects.filter(target="e9:pgnew").exists()


def test_suggested_restore_name_drops_the_host(two_hosts):
    from restores.services import suggested_name

    assert suggested_name(two_hosts["b_there"]).startswith("pgdata-restored-")


# --- policies -----------------------------------------------------------------------------


def test_policy_names_selection_accepts_volume_references():
    parsed = selection.parse(selection.NAMES, "pgdata\ne1:pgdata, e2:cache")
    assert parsed.names == ("pgdata", "e1:pgdata", "e2:cache")
    for bad in ("E1:pgdata", "e1:", ":pgdata", "e1:pg/data", "e1:e2:x"):
        with pytest.raises(selection.SelectionError):
            selection.parse(selection.NAMES, bad)


def test_policy_page_shows_the_host_of_each_covered_volume(two_hosts, client_for):
    policy = BackupPolicy.objects.create(name="both", selector_kind="names", selector_value="pgdata\ne1:pgdata",
                                         cron="0 2 * * *")
    page = _page(client_for("Viewer"), f"/policies/{policy.pk}/")
    covered = page.split('id="selected-volumes"', 1)[1].split("</ul>", 1)[0]
    assert sorted(_host_cells(covered)) == ["e1", "local"]


def test_policies_list_filters_by_the_hosts_a_policy_selects(two_hosts, client_for):
    Volume.objects.filter(pk=two_hosts["here"].pk).update(labels={"tier": "db"})
    BackupPolicy.objects.create(name="remote", selector_kind="names", selector_value="e1:pgdata", cron="0 2 * * *")
    BackupPolicy.objects.create(name="by-label", selector_kind="label", selector_value="tier=db", cron="0 2 * * *")
    viewer = client_for("Viewer")
    listed = lambda url: set(re.findall(r'<tr data-policy="([^"]+)">', _page(viewer, url)))
    assert listed("/policies/") == {"remote", "by-label"}
    assert listed("/policies/?host=e1") == {"remote"}
    assert listed("/policies/?host=local") == {"by-label"}
    Volume.objects.filter(pk=two_hosts["there"].pk).update(labels={"tier": "db"})
    assert listed("/policies/?host=e1") == {"remote", "by-label"}


def test_label_policies_cover_volumes_on_every_host(two_hosts):
    Volume.objects.filter(pk__in=[two_hosts["here"].pk, two_hosts["there"].pk]).update(labels={"tier": "db"})
    assert selection.selected_volume_names(selection.parse(selection.LABEL, "tier=db")) == ["e1:pgdata", "pgdata"]


def test_policy_form_takes_a_reference_of_another_host(two_hosts, client_for):
    response = client_for("Admin").post("/policies/new/", {
        "name": "remote", "selector_kind": "names", "selector_value": "e1:pgdata", "cron": "0 2 * * *",
        "timezone": "UTC", "compression": "zstd", "overdue_grace_minutes": 60, "keep_last": 3,
        "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_yearly": 0, "max_age_days": 0,
    })
    assert response.status_code in (302, 303), response.content.decode()[:3000]
    assert BackupPolicy.objects.get(name="remote").selection.names == ("e1:pgdata",)


# --- audit trail --------------------------------------------------------------------------


def test_audit_trail_filters_by_host(two_hosts, client_for):
    from accounts.services import audit_record

    audit_record(action="volume_create", object_type="volume", object_name="e1:pgdata", actor_name="t")
    audit_record(action="volume_create", object_type="volume", object_name="pgdata", actor_name="t")
    audit_record(action="host_save", object_type="host", object_name="e1", actor_name="t")
    audit_record(action="backup_verify", object_type="backup", object_name=str(two_hosts["b_there"].pk), actor_name="t")
    audit_record(action="backup_verify", object_type="backup", object_name=str(two_hosts["b_here"].pk), actor_name="t")
    admin = client_for("Admin")
    page = _page(admin, "/audit/?host=e1")
    shown = {(e.object_type, e.object_name) for e in AuditEvent.objects.filter(
        pk__in=[int(pk) for pk in re.findall(r'data-event="(\d+)"', page)])}
    assert shown == {("volume", "e1:pgdata"), ("host", "e1"), ("backup", str(two_hosts["b_there"].pk))}
    local = _page(admin, "/audit/?host=local")
    shown = {(e.object_type, e.object_name) for e in AuditEvent.objects.filter(
        pk__in=[int(pk) for pk in re.findall(r'data-event="(\d+)"', local)])}
    assert ("volume", "pgdata") in shown and ("backup", str(two_hosts["b_here"].pk)) in shown
    assert not {("volume", "e1:pgdata"), ("host", "e1")} & shown
    assert '<option value="e1" selected>' in page


# --- overview, risks, graph ---------------------------------------------------------------


def test_overview_has_a_hosts_panel_with_state_counts_and_sizes(two_hosts, client_for):
    Host.objects.create(name="e2", heartbeat_at=timezone.now() - timezone.timedelta(hours=2))
    EngineStatus.objects.create(host=two_hosts["e1"], server_version="27.1.0")
    page = _page(client_for("Viewer"), "/")
    panel = page.split('id="hosts-panel"', 1)[1].split("</section>", 1)[0]
    rows = dict(re.findall(r'<tr data-host="([^"]+)">(.*?)</tr>', panel, re.DOTALL))
    assert set(rows) == {"local", "e1", "e2"}
    assert "online" in rows["e1"] and "27.1.0" in rows["e1"]
    assert "offline" in rows["e2"] and "since" in rows["e2"]
    assert '/volumes/?host=e1' in rows["e1"]
    assert ">1<" in rows["e1"].replace(" ", "") and "4.9" in rows["e1"]  # one volume, 5000 bytes
    assert ">0<" in rows["e2"].replace(" ", "")


def test_risks_page_shows_and_filters_by_host(two_hosts, client_for):
    # Never backed up (no successful job in the catalogue for the volume id): both volumes are findings.
    Backup.objects.all().delete()
    viewer = client_for("Viewer")
    page = _page(viewer, "/risks/")
    subjects = dict(re.findall(r'<tr data-subject="([^"]+)">.*?data-host="([^"]+)"', page, re.DOTALL))
    assert subjects.get("e1:pgdata") == "e1" and subjects.get("pgdata") == "local"
    only = _page(viewer, "/risks/?host=e1")
    assert 'data-subject="e1:pgdata"' in only and 'data-subject="pgdata"' not in only


def test_risks_of_each_host_use_its_own_engines_data_root(two_hosts):
    from insights.selectors import mirror_rows, risk_groups

    EngineStatus.objects.create(host=two_hosts["e1"], docker_root_dir="/srv/docker-e1")
    c = Container.objects.create(engine_id="id-binder", name="binder", host=two_hosts["e1"], state="running")
    Mount.objects.create(container=c, kind="bind", source="/srv/docker-e1/volumes", destination="/x")
    groups = risk_groups(rows=mirror_rows(), last=None)
    binds = [f for g in groups if g.kind.slug == "sensitive-bind" for f in g.findings]
    assert [(f.subject, f.host) for f in binds] == [("binder", "e1")]


def test_graph_shows_one_host_at_a_time_defaulting_to_the_default_host(two_hosts, client_for):
    viewer = client_for("Viewer")
    default = _page(viewer, "/graph/")
    assert 'data-node="volume:pgdata"' in default and 'data-node="volume:e1:pgdata"' not in default
    assert 'data-node="container:web-local"' in default and 'data-node="container:web-e1"' not in default
    assert '<select name="host"' in default and '<option value="local" selected>' in default
    e1 = _page(viewer, "/graph/?host=e1")
    assert 'data-node="volume:e1:pgdata"' in e1 and 'data-node="volume:pgdata"' not in e1
    assert 'data-node="container:web-e1"' in e1
    # A volume's neighbourhood is drawn on its own host, whatever ?host= says.
    focus = _page(viewer, "/graph/?volume=e1:pgdata&host=local")
    assert 'data-node="volume:e1:pgdata"' in focus and 'data-node="container:web-e1"' in focus


def test_graph_polls_keep_the_host(two_hosts, client_for):
    page = _page(client_for("Viewer"), "/graph/?host=e1")
    assert re.search(r'hx-get="[^"]*host=e1', page)


# --- jobs ---------------------------------------------------------------------------------


def test_job_card_says_which_host_runs_it(two_hosts, client_for):
    job = Job.objects.create(kind="backup", target="e1:pgdata", host="e1", status="running")
    Backup.objects.create(job=job, volume=two_hosts["there"], volume_name="e1:pgdata")
    page = _page(client_for("Viewer"), f"/jobs/{job.pk}/")
    assert 'data-job-host="e1"' in page and "on host e1" in page
    Host.objects.filter(name="e1").update(heartbeat_at=None)
    assert "worker offline" in _page(client_for("Viewer"), f"/jobs/{job.pk}/")


def test_job_card_has_no_host_on_a_single_host_install(one_host, client_for):
    job = Job.objects.create(kind="backup", target="pgdata", host="local", status="running")
    assert "data-job-host" not in _page(client_for("Viewer"), f"/jobs/{job.pk}/")
