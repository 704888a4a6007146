"""Hooks around backups: labels (ours and offen's), policy hooks, the job's log, failing and hanging hooks."""

import tarfile

import pytest
from django.db import transaction

from backups import hooks, services
from backups.models import Backup
from backups.storage import get_storage
from jobs.models import Job
from tests import dockercli
from tests.backups.conftest import run_backup
from tests.conftest import wait_for
from volumes import engine
from volumes.services import mirror_sync

SERVICE = "trap 'exit 0' TERM; sleep 3600 & wait"


def _container(**labels) -> engine.EngineContainer:
    return engine.EngineContainer(id="c1", name="db", image="postgres:16", state="running", status="",
                                  labels=labels, created_at=None, mounts=())


# --- pure: what the labels say ----------------------------------------------------------------


def test_labels_give_our_hooks_then_offens_with_user_and_timeout(settings):
    c = _container(**{"cargohold.backup.pre": "sh -c 'echo \"a b\" > /data/x'",
                      "docker-volume-backup.archive-pre": "pg_dumpall -f /data/d.sql",
                      "docker-volume-backup.archive-pre.user": "postgres",
                      "cargohold.hook.user": "1000", "cargohold.hook.timeout": "42"})

    found = hooks.hooks_from_labels(c, hooks.PRE)

    assert [h.argv for h in found] == [("sh", "-c", 'echo "a b" > /data/x'), ("pg_dumpall", "-f", "/data/d.sql")]
    assert [h.user for h in found] == ["1000", "postgres"] and {h.timeout for h in found} == {42}
    assert not found[0].continue_on_failure
    assert hooks.hooks_from_labels(c, hooks.POST) == []
    assert hooks.hooks_from_labels(_container(), hooks.PRE) == []


def test_continue_on_failure_label_and_default_timeout(settings):
    settings.HOOK_TIMEOUT_SECONDS = 77
    c = _container(**{"cargohold.backup.pre": "true", "cargohold.backup.pre.continue-on-failure": "true"})

    [hook] = hooks.hooks_from_labels(c, hooks.PRE)

    assert hook.continue_on_failure and hook.timeout == 77 and hook.user == ""


@pytest.mark.parametrize("labels, words", [
    ({"cargohold.backup.pre": "sh -c 'unclosed"}, "cannot be read as a command"),
    ({"cargohold.backup.pre": "true", "cargohold.hook.timeout": "soon"}, "number of seconds"),
    ({"cargohold.backup.pre": "true", "cargohold.hook.timeout": "0"}, "number of seconds"),
])
def test_a_label_that_cannot_be_read_is_refused_with_its_name(labels, words):
    with pytest.raises(hooks.HookFailed, match=words) as caught:
        hooks.hooks_from_labels(_container(**labels), hooks.PRE)
    assert "db" in str(caught.value)


# --- against the engine -----------------------------------------------------------------------


def _volume_with_container(labels: dict) -> tuple[str, str]:
    name = dockercli.create_volume()
    dockercli.fill_volume(name, "echo data > /data/data.txt")
    ctr = dockercli.run_container(f"{name}:/data", command=SERVICE, labels=labels)
    mirror_sync()
    return name, ctr


def _members(backup: Backup) -> dict[str, bytes]:
    with tarfile.open(get_storage().location(backup.key), "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def _read(ctr: str, path: str) -> str:
    return dockercli.docker("exec", ctr, "cat", path, check=False)


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
@pytest.mark.worker
def test_pre_and_post_hooks_run_around_the_backup_by_the_worker_and_log(celery_worker):
    name, ctr = _volume_with_container({
        "cargohold.backup.pre": "sh -c 'echo dumped-before > /data/dump.sql; echo pre says hello'",
        "docker-volume-backup.archive-post": "sh -c 'echo done > /tmp/post-ran; echo post says bye >&2'",
    })
    with transaction.atomic():
        backup = services.backup_start(volume_name=name, compression="gzip")

    wait_for(lambda: not Job.objects.get(pk=backup.job_id).is_active, timeout=90, message="the backup")
    backup.refresh_from_db()
    job = Job.objects.get(pk=backup.job_id)

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert _members(backup)["data/dump.sql"] == b"dumped-before\n"  # the pre-hook ran first
    assert _read(ctr, "/tmp/post-ran") == "done"
    assert "pre says hello" in job.log and "post says bye" in job.log and "exit 0" in job.log
    assert job.result["hooks"] == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_failing_pre_hook_aborts_the_backup_and_post_hooks_still_run(no_enqueue, backup_root):
    name, ctr = _volume_with_container({
        "cargohold.backup.pre": "sh -c 'echo cannot lock tables >&2; exit 3'",
        "cargohold.backup.post": "touch /tmp/post-ran",
    })
    backup = run_backup(services.backup_start(volume_name=name))

    assert backup.status == Backup.Status.FAILED
    assert "backup.pre hook" in backup.error and "exit 3" in backup.error and "cannot lock tables" in backup.error
    assert not backup.key and not list(backup_root.rglob("*.tar*"))  # nothing was backed up
    assert dockercli.docker("exec", ctr, "ls", "/tmp/post-ran", check=False) == "/tmp/post-ran"
    assert "cannot lock tables" in Job.objects.get(pk=backup.job_id).log


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_failing_pre_hook_allowed_to_continue_is_a_warning(no_enqueue, backup_root):
    name, _ = _volume_with_container({"cargohold.backup.pre": "false",
                                      "cargohold.backup.pre.continue-on-failure": "true"})
    backup = run_backup(services.backup_start(volume_name=name))

    job = Job.objects.get(pk=backup.job_id)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert any("exit 1" in w for w in job.result["warnings"])


def _sleeps(ctr: str) -> list[str]:
    return [line for line in dockercli.docker("exec", ctr, "ps", "-o", "args").splitlines()
            if "sleep 4242" in line]


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_hanging_pre_hook_is_killed_at_its_timeout_and_fails_the_backup(no_enqueue, backup_root):
    name, ctr = _volume_with_container({"cargohold.backup.pre": "sleep 4242", "cargohold.hook.timeout": "2"})
    backup = run_backup(services.backup_start(volume_name=name))

    assert backup.status == Backup.Status.FAILED
    assert "killed after its timeout of 2 s" in backup.error
    assert _sleeps(ctr) == []  # the hanging process is gone from the container
    assert "killed" in Job.objects.get(pk=backup.job_id).log


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_exec_without_timeout_in_the_image_is_killed_from_outside():
    name = dockercli.create_volume()
    ctr = dockercli.run_container(f"{name}:/data", command=SERVICE)
    cid = dockercli.docker("inspect", "-f", "{{.Id}}", ctr)
    lines = []

    result = engine.exec_run(cid, ["sh", "-c", "echo started; sleep 4242"], timeout=2, on_line=lines.append,
                             killers=("sh",))  # as in an image without `timeout`

    assert result.timed_out and result.exit_code is None and lines == ["started"]
    assert _sleeps(ctr) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_exec_runs_as_the_given_user_and_streams_stdin_and_stdout():
    name = dockercli.create_volume()
    ctr = dockercli.run_container(f"{name}:/data", command=SERVICE)
    cid = dockercli.docker("inspect", "-f", "{{.Id}}", ctr)
    out = bytearray()

    who = engine.exec_run(cid, ["id", "-u"], timeout=10, user="1234")
    copied = engine.exec_run(cid, ["cat"], timeout=10, stdin=iter([b"abc", b"def" * 100000]),
                             stdout_sink=out.extend)

    assert who.ok and who.output.strip() == "1234"
    assert copied.ok and bytes(out) == b"abc" + b"def" * 100000


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_policy_hooks_run_in_the_volumes_containers(no_enqueue, backup_root):
    from policies.models import BackupPolicy, PolicyRun
    from policies.runs import policy_run
    from django.utils import timezone

    name, ctr = _volume_with_container({})
    policy = BackupPolicy.objects.create(name="hooked", selector_kind="names", selector_value=name,
                                         cron="0 3 * * *", compression="gzip", hook_pre="sh -c 'id -u > /tmp/who'",
                                         hook_user="4321", hook_post="touch /tmp/policy-post")
    [run] = policy_run(policy=policy, scheduled_for=timezone.now(), trigger=PolicyRun.Trigger.MANUAL)
    backup = run_backup(run.backup)

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.compression == "gzip"
    assert _read(ctr, "/tmp/who") == "4321"  # as the policy's user
    assert dockercli.docker("exec", ctr, "ls", "/tmp/policy-post", check=False) == "/tmp/policy-post"


@pytest.mark.django_db
def test_the_job_page_shows_the_log(client_for):
    job = Job.objects.create(kind="backup", target="v", status=Job.Status.RUNNING,
                             log="$ pg_dumpall\n  password=hunter2 leaked\n")
    client = client_for("Viewer")

    page = client.get(f"/jobs/{job.pk}/").content.decode()
    region = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()

    assert "$ pg_dumpall" in page and "$ pg_dumpall" in region
    assert "hunter2" not in page


def test_the_log_keeps_its_tail_and_scrubs():
    from jobs.runner import LOG_MAX_CHARS, JobContext

    ctx = JobContext(Job(pk=1, kind="backup"))
    for i in range(5000):
        ctx.log(f"line {i:05d} " + "x" * 40)
    ctx.log("token=abc123")

    assert len(ctx.log_text) <= LOG_MAX_CHARS and ctx.log_text.startswith("[earlier lines dropped]\nline ")
    assert ctx.log_text.endswith("token=***\n") and "line 04999" in ctx.log_text
    assert ctx.log_pending() == ctx.log_text and ctx.log_pending() is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
@pytest.mark.worker
def test_a_hook_whose_worker_is_killed_still_dies_at_its_timeout(worker_factory):
    import os

    from jobs.models import Job

    name, ctr = _volume_with_container({"cargohold.backup.pre": "sleep 4242", "cargohold.hook.timeout": "8"})
    queue = f"{os.environ['CELERY_QUEUE']}-hook"
    worker = worker_factory(concurrency=1, name="hooker", queue=queue)
    backup = services.backup_start(volume_name=name, queue=queue)
    wait_for(lambda: _sleeps(ctr), timeout=60, message="the hook to run")

    worker.kill()
    worker_factory(concurrency=1, name="recoverer", queue=queue)  # its start fails the dead worker's job

    wait_for(lambda: not _sleeps(ctr), timeout=30, message="the hook to be killed by its timeout")
    wait_for(lambda: not Job.objects.get(pk=backup.job_id).is_active, timeout=60, message="the job to end")
    assert Backup.objects.get(pk=backup.pk).status == Backup.Status.FAILED


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_restore_post_hooks_run_after_a_restore_in_place(no_enqueue, backup_root):
    from jobs.runner import job_perform
    from restores import services as restore_services

    name, ctr = _volume_with_container({"cargohold.restore.post": "sh -c 'cat /data/data.txt > /tmp/restored'"})
    backup = run_backup(services.backup_start(volume_name=name))
    restore = restore_services.restore_in_place_start(backup=backup, confirm_name=name)

    job_perform(restore.job_id)

    job = Job.objects.get(pk=restore.job_id)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert "restore.post hook" in job.log
    assert _read(ctr, "/tmp/restored") == "data"
