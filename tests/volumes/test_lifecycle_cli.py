"""The management commands: same checks, jobs and audit records as the pages, run by a real worker."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent
from jobs.models import Job
from tests import dockercli
from volumes import services
from volumes.models import Volume

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.worker
def test_create_volume_waits_for_the_worker_and_prints_the_outcome(celery_worker):
    name = dockercli.unique_name("cli")

    out = _run("create_volume", name, "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m",
               "--label", dockercli.TEST_LABEL, "--label", "team=shop", "--timeout", "60")

    assert f"Created volume {name}." in out
    inspected = json.loads(dockercli.docker("volume", "inspect", name))[0]
    assert inspected["Options"]["o"] == "size=1m" and inspected["Labels"]["team"] == "shop"
    assert Volume.objects.filter(name=name, gone_since__isnull=True).exists()
    event = AuditEvent.objects.get(action="volume_create", object_name=name)
    assert event.result == "ok" and event.actor_name.startswith("cli:") and event.params["trigger"] == "cli"


@pytest.mark.worker
def test_remove_volume_is_refused_while_a_stopped_container_uses_it_then_removes_it(celery_worker):
    name = dockercli.create_volume()
    container = dockercli.run_container(f"{name}:/data", start=False)
    services.mirror_sync()

    with pytest.raises(CommandError, match=f"{container} \\(created\\)"):
        _run("remove_volume", name, "--yes")
    dockercli.docker("rm", container)
    services.mirror_sync()
    out = _run("remove_volume", name, "--yes", "--timeout", "60")

    assert f"Removed volume {name}" in out
    assert not dockercli.volume_exists(name)
    assert list(AuditEvent.objects.filter(action="volume_remove", object_name=name).values_list("result", flat=True)
                .order_by("id")) == ["error", "ok"]


@pytest.mark.worker
def test_prune_volumes_dry_run_changes_nothing_and_the_real_run_removes_the_same_list(celery_worker):
    own = [dockercli.create_volume(), dockercli.create_volume()]
    used = dockercli.create_volume()
    dockercli.run_container(f"{used}:/data", start=False)
    services.mirror_sync()
    only_ours = ["--all", "--filter-label", dockercli.TEST_LABEL]

    dry = _run("prune_volumes", "--dry-run", *only_ours)

    assert all(name in dry for name in own) and used not in dry
    assert "2 volumes would be removed" in dry
    assert all(dockercli.volume_exists(n) for n in own) and not Job.objects.exists()

    out = _run("prune_volumes", "--yes", "--timeout", "60", *only_ours)

    assert "Removed 2 volumes, skipped 0" in out
    assert not any(dockercli.volume_exists(n) for n in own) and dockercli.volume_exists(used)


def test_create_volume_with_invalid_input_creates_nothing():
    for args, message in [
        (["a"], "not a valid volume name"),
        (["ok-name", "--opt", "bad key=1"], "spaces or control characters"),
        (["ok-name", "--label", "x=1", "--label", "x=2"], "given twice"),
        (["ok-name", "--driver", "nosuch"], "no volume driver named nosuch"),
        ([], "Type a name"),
    ]:
        with pytest.raises(CommandError, match=message):
            _run("create_volume", *args)
    assert not Job.objects.exists()


def test_destructive_commands_want_confirmation_without_a_terminal(monkeypatch):
    name = dockercli.create_volume()
    services.mirror_sync()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    with pytest.raises(CommandError, match="pass --yes"):
        _run("remove_volume", name)
    assert not Job.objects.exists()


def test_an_operator_account_may_not_act_through_the_cli(make_user):
    operator = make_user("Operator")

    with pytest.raises(CommandError, match="Admins only"):
        _run("create_volume", dockercli.unique_name("op"), "--user", operator.username)

    assert not Job.objects.exists()
    assert AuditEvent.objects.get(action="permission_denied").actor_name == operator.username


def test_no_wait_prints_the_job_and_returns(make_user):
    admin = make_user("Admin")
    name = dockercli.unique_name("nowait")

    out = _run("create_volume", name, "--no-wait", "--user", admin.username, "--label", dockercli.TEST_LABEL)

    job = Job.objects.get(kind="volume_create")
    assert f"Job #{job.pk} (volume_create) queued." in out
    assert job.created_by == admin and job.trigger == "cli"
