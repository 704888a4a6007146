"""Restore drills against the real engine: a good backup proves restorable, a corrupted or
mis-recorded one fails the drill (notified, at risk), a probe runs, nothing is left behind,
also when the worker running the drill is killed."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from backups import services as backup_services
from backups.storage import get_storage
from drills import services
from drills.models import Drill
from jobs.models import Job
from jobs.runner import job_perform
from tests import dockercli
from tests.backups.conftest import run_backup
from tests.conftest import wait_for
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

FILES = ("mkdir -p /data/dir && echo hello > /data/dir/hello.txt && head -c 200000 /dev/urandom > /data/dir/r.bin"
         " && ln -s hello.txt /data/dir/link")


@pytest.fixture
def backed_up(monkeypatch):
    """A volume's backup, run in this process (in the run's BACKUP_ROOT, which workers share)."""
    from jobs import services as job_services

    def make(script: str = FILES):
        name = dockercli.create_volume()
        dockercli.fill_volume(name, script)
        mirror_sync()
        with monkeypatch.context() as m:
            m.setattr(job_services, "job_enqueue", lambda **kwargs: None)
            backup = run_backup(backup_services.backup_start(volume_name=name))
        assert backup.status == "succeeded", backup.error
        return backup

    return make


def _scratch_volumes() -> list[str]:
    """This test process's scratch volumes (drill ids repeat across the parallel processes)."""
    from django.conf import settings

    return [v for v in dockercli.docker("volume", "ls", "-q", "--filter", "label=cargohold.drill", "--filter",
                                        f"label=cargohold.install={settings.INSTALL_ID}").splitlines() if v]


def _drill_helpers(job_id: int) -> list[str]:
    return [c for c in dockercli.docker("ps", "-aq", "--filter", f"label=cargohold.job={job_id}").splitlines() if c]


def _policy(name: str, **fields):
    from policies.models import BackupPolicy

    return BackupPolicy.objects.create(name=f"drill-{name[-6:]}-{os.urandom(2).hex()}", selector_kind="names",
                                       selector_value=name, cron="0 3 * * *", **fields)


def _run(drill: Drill) -> Drill:
    job_perform(drill.job_id)
    return Drill.objects.get(pk=drill.pk)


def test_a_good_backup_is_proven_restorable_and_its_scratch_volume_removed(backed_up, no_enqueue):
    backup = backed_up()
    policy = _policy(backup.volume_name, drill_probe="grep -q hello /data/dir/hello.txt && echo probe-ok")

    drill = _run(services.drill_start(backup=backup, policy=policy))

    assert drill.status == Job.Status.SUCCEEDED, drill.error
    assert {c["check"] for c in drill.checks} >= {"archive", "file count", "data bytes", "probe"}
    assert all(c["ok"] for c in drill.checks)
    assert "probe-ok" in Job.objects.get(pk=drill.job_id).log
    assert drill.scratch_volume == "" and _scratch_volumes() == [] and _drill_helpers(drill.job_id) == []
    assert backup.volume_name in services.last_proven([backup.volume_name])


def _notify_on_failure():
    from policies.models import NotificationSettings

    config = NotificationSettings.load()
    config.webhook_enabled, config.webhook_url, config.on_failure = True, "http://127.0.0.1:9/hook", True
    config.save()


def test_a_corrupted_backup_fails_the_drill_and_is_notified_and_at_risk(backed_up, no_enqueue):
    from policies.models import Notification

    _notify_on_failure()
    backup = backed_up()
    path = get_storage().location(backup.key)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the archive
    open(path, "wb").write(bytes(data))

    drill = _run(services.drill_start(backup=backup))

    assert drill.status == Job.Status.FAILED
    assert "archive" in drill.error and [c["check"] for c in drill.checks if not c["ok"]] == ["archive"]
    assert _scratch_volumes() == []
    assert Notification.objects.filter(subject__contains=f"drill of {backup.volume_name}").exists()
    assert backup.volume_name not in services.last_proven([backup.volume_name])
    assert backup.volume_name in services.failed_last([backup.volume_name])


def test_a_restore_that_does_not_match_the_manifest_fails_the_drill(backed_up, no_enqueue):
    backup = backed_up()
    manifest = dict(backup.manifest)
    manifest["content"] = {**manifest["content"], "data_bytes": manifest["content"]["data_bytes"] + 1}
    type(backup).objects.filter(pk=backup.pk).update(manifest=manifest)

    drill = _run(services.drill_start(backup=backup))

    assert drill.status == Job.Status.FAILED and "data bytes" in drill.error
    assert _scratch_volumes() == [] and _drill_helpers(drill.job_id) == []


def test_a_failing_probe_fails_the_drill(backed_up, no_enqueue):
    backup = backed_up()
    policy = _policy(backup.volume_name, drill_probe="echo no such table >&2; exit 4")

    drill = _run(services.drill_start(backup=backup, policy=policy))

    assert drill.status == Job.Status.FAILED and "probe" in drill.error and "no such table" in drill.error
    assert _scratch_volumes() == []


def test_due_drills_start_once_per_interval(backed_up, no_enqueue):
    backup = backed_up()
    policy = _policy(backup.volume_name, drill_every_days=7)

    first = services.drills_start_due()
    again = services.drills_start_due()
    later = services.drills_start_due(now=timezone.now() + timedelta(days=8))

    assert [d.backup_id for d in first] == [backup.pk] and first[0].policy == policy
    assert again == [] and later == []  # the first is still queued: one at a time per volume


@pytest.mark.worker
def test_a_drill_interrupted_by_a_killed_worker_leaves_nothing_behind(backed_up, worker_factory):
    backup = backed_up()
    policy = _policy(backup.volume_name, drill_probe="sleep 120")
    queue = f"{os.environ['CELERY_QUEUE']}-drill"
    worker = worker_factory(concurrency=1, name="driller", queue=queue)

    drill = services.drill_start(backup=backup, policy=policy, queue=queue)
    wait_for(lambda: _scratch_volumes() and len(_drill_helpers(drill.job_id)) == 1, timeout=120,
             message="the probe to run in the scratch volume")

    worker.kill()
    worker_factory(concurrency=1, name="recoverer", queue=queue)  # a worker start runs the recovery

    wait_for(lambda: not Job.objects.get(pk=drill.job_id).is_active, timeout=120, message="the drill's job to end")
    wait_for(lambda: _scratch_volumes() == [] and _drill_helpers(drill.job_id) == [], timeout=60,
             message="the scratch volume and the probe container to go")
    drill.refresh_from_db()
    assert drill.status == Job.Status.FAILED and drill.scratch_volume == ""


def test_pages_show_last_proven_restorable_and_a_failed_drill_at_risk(backed_up, no_enqueue, client_for):
    good, bad = backed_up(), backed_up()
    assert _run(services.drill_start(backup=good)).status == Job.Status.SUCCEEDED
    type(bad).objects.filter(pk=bad.pk).update(file_count=bad.file_count + 3)  # recorded wrong: the drill sees it
    assert _run(services.drill_start(backup=type(bad).objects.get(pk=bad.pk))).status == Job.Status.FAILED
    viewer = client_for("Viewer")

    # This run's volumes only: another test process's may fill page 1 (the list pages by 50).
    volumes = viewer.get(f"/volumes/?q={dockercli.RUN_ID}").content.decode()
    risks = viewer.get("/risks/").content.decode()
    overview = viewer.get("/").content.decode()

    assert volumes.count('data-proven="failed"') == 1 and "proven " in volumes
    assert "Volumes whose restore drill failed" in risks and bad.volume_name in risks
    assert good.volume_name not in risks.split("Volumes whose restore drill failed")[1].split("</section>")[0]
    assert "Proven restorable" in overview and "data-drill-failed" in overview


# --- the Admin-only settings page -----------------------------------------------------------


def _plain_policy():
    from policies.models import BackupPolicy

    return BackupPolicy.objects.create(name=f"p-{os.urandom(3).hex()}", selector_kind="names", selector_value="x",
                                       cron="0 3 * * *")


def test_an_admin_sets_a_policys_hooks_and_drills(client_for):
    from accounts.models import AuditEvent

    policy = _plain_policy()
    admin = client_for("Admin")

    assert "Hooks and drills" in admin.get(f"/policies/{policy.pk}/").content.decode()
    assert admin.get(f"/policies/{policy.pk}/hooks/").status_code == 200
    done = admin.post(f"/policies/{policy.pk}/hooks/", {
        "hook_pre": "sh -c 'pg_dumpall -U postgres > /var/lib/postgresql/data/dump.sql'", "hook_post": "",
        "hook_user": "postgres", "hook_timeout_seconds": "120", "drill_every_days": "7",
        "drill_probe": "test -s /data/dump.sql"})

    assert done.status_code == 302
    policy.refresh_from_db()
    assert policy.hook_user == "postgres" and policy.hook_timeout_seconds == 120 and policy.drill_every_days == 7
    assert policy.hook_pre.startswith("sh -c")
    assert AuditEvent.objects.filter(action="policy_hooks_update", object_name=policy.name).exists()


def test_a_command_that_cannot_be_read_is_refused_and_nothing_changes(client_for):
    policy = _plain_policy()

    page = client_for("Admin").post(f"/policies/{policy.pk}/hooks/", {
        "hook_pre": "sh -c 'unclosed", "hook_user": "postgres; rm", "hook_timeout_seconds": "0",
        "drill_every_days": "0"})

    assert page.status_code == 200
    text = page.content.decode()
    assert "cannot be read as a command" in text and "letters, digits" in text
    policy.refresh_from_db()
    assert policy.hook_pre == "" and policy.hook_user == ""


@pytest.mark.parametrize("role", ["Operator", "Viewer"])
def test_only_admins_reach_the_hooks_page(client_for, role):
    policy = _plain_policy()
    client = client_for(role)

    assert client.get(f"/policies/{policy.pk}/hooks/").status_code == 403
    assert client.post(f"/policies/{policy.pk}/hooks/", {"hook_pre": "id"}).status_code == 403
    policy.refresh_from_db()
    assert policy.hook_pre == ""


def test_the_hooks_page_wants_get_or_post_and_a_csrf_token(make_user, client_for):
    from django.test import Client

    policy = _plain_policy()
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("Admin"))

    assert client.post(f"/policies/{policy.pk}/hooks/", {"hook_pre": "id"}).status_code == 403
    assert client_for("Admin").put(f"/policies/{policy.pk}/hooks/").status_code == 405
    assert client_for("Admin").get("/policies/999999/hooks/").status_code == 404
    policy.refresh_from_db()
    assert policy.hook_pre == ""


# --- drills of database dumps ------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_image():
    from tests import dbimages

    return dbimages.ensure_image()


def _postgres_backup(db_image, monkeypatch):
    from drills.models import DumpChoice
    from jobs import services as job_services
    from tests import dbimages

    volume, ctr = dbimages.postgres_container(db_image)
    dbimages.psql(ctr, "create database shop")
    dbimages.psql(ctr, "create table t (x int); insert into t values (1)")
    DumpChoice.objects.create(volume_name=volume, container_name=ctr, recipe="postgres")
    with monkeypatch.context() as m:
        m.setattr(job_services, "job_enqueue", lambda **kwargs: None)
        backup = run_backup(backup_services.backup_start(volume_name=volume))
    assert backup.status == "succeeded", backup.error
    return backup


def _server_containers() -> list[str]:
    return [c for c in dockercli.docker("ps", "-aq", "--filter", "label=cargohold.helper=drill-server").splitlines()
            if c]


def test_a_drill_loads_the_postgres_dump_into_a_scratch_server_and_queries_it(db_image, monkeypatch, no_enqueue):
    backup = _postgres_backup(db_image, monkeypatch)

    drill = _run(services.drill_start(backup=backup))

    assert drill.status == Job.Status.SUCCEEDED, drill.error
    loads = [c for c in drill.checks if c["check"].endswith(" loads")]
    assert loads and loads[0]["ok"] and "2 databases answer a query" in loads[0]["detail"]  # postgres and shop
    assert _server_containers() == [] and _scratch_volumes() == []


def test_a_drill_catches_a_corrupted_dump(db_image, monkeypatch, no_enqueue):
    backup = _postgres_backup(db_image, monkeypatch)
    path = get_storage().location(backup.manifest["dumps"][0]["key"])
    with open(path, "ab") as f:
        f.write(b"-- tampered\n")

    drill = _run(services.drill_start(backup=backup))

    assert drill.status == Job.Status.FAILED and "SHA-256" in drill.error and "dump" in drill.error
    assert _server_containers() == [] and _scratch_volumes() == []
