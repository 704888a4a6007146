"""manage.py run_policy and apply_retention."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import AuditEvent
from backups.models import Backup
from policies import services
from tests.policies.test_services import follow
from policies.models import PolicyRun
from tests import dockercli
from tests.policies.conftest import run_backups

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


def call(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_run_policy_needs_a_known_name(make_policy):
    make_policy(selector_value="a=b")
    with pytest.raises(CommandError, match="No policy named 'nope' \\(policies: nightly\\)"):
        call("run_policy", "nope")


@pytest.mark.worker
def test_run_policy_wait_follows_the_runs_to_the_end(make_policy, celery_worker):
    sel = dockercli.unique_name("cli")
    name = dockercli.create_volume(labels={"chtest.cli": sel})
    make_policy("cli policy", selector_value=f"chtest.cli={sel}")
    out = call("run_policy", "cli policy", "--wait", "--timeout", "120")
    assert f"{name}: succeeded" in out
    run = PolicyRun.objects.get(volume_name=name)
    assert run.trigger == "cli" and Backup.objects.get(pk=run.backup_ref).status == "succeeded"
    assert AuditEvent.objects.filter(action="policy_run", object_name="cli policy",
                                     actor_name__startswith="cli:").exists()


def test_run_policy_wait_fails_when_a_run_fails(make_policy):
    make_policy(selector_kind="names", selector_value="chtest-no-such-volume")
    with pytest.raises(CommandError, match="1 run failed"):
        call("run_policy", "nightly", "--wait")


def test_apply_retention_dry_run_then_for_real(make_policy, labelled_volumes, no_enqueue, backup_root):
    sel = f"chtest.cli={dockercli.unique_name('ret')}"
    [name] = labelled_volumes(1, sel)
    policy = make_policy(selector_value=sel, keep_last=5)
    made = []
    for _ in range(3):
        runs = services.policy_run_now(policy=policy)
        run_backups(runs)
        follow()
        made.append(runs[0].backup_ref)
    policy.keep_last = 1
    services.policy_save(policy=policy)

    out = call("apply_retention", "--policy", "nightly", "--dry-run")
    assert f"{name}: would delete #{made[1]}" in out and f"#{made[0]}" in out
    assert Backup.objects.filter(volume_name=name).count() == 3

    out = call("apply_retention")
    assert "Deleted 2 backups" in out
    assert list(Backup.objects.filter(volume_name=name).values_list("pk", flat=True)) == [made[2]]
    assert AuditEvent.objects.filter(action="retention_delete").count() == 2


def test_apply_retention_prunes_nothing_after_a_failed_run(make_policy, labelled_volumes, no_enqueue, backup_root):
    sel = f"chtest.cli={dockercli.unique_name('ret')}"
    [name] = labelled_volumes(1, sel)
    policy = make_policy(selector_value=sel, keep_last=5)
    for _ in range(2):
        runs = services.policy_run_now(policy=policy)
        run_backups(runs)
        follow()
    runs = services.policy_run_now(policy=policy)
    dockercli.docker("volume", "rm", name)
    run_backups(runs)
    follow()
    policy.keep_last = 1
    services.policy_save(policy=policy)
    out = call("apply_retention", "--policy", "nightly")
    assert "new backup failed" in out
    assert Backup.objects.filter(volume_name=name, status="succeeded").count() == 2


def test_apply_retention_unknown_policy():
    with pytest.raises(CommandError, match="No policy named"):
        call("apply_retention", "--policy", "nope")


def test_sync_policy_schedules_undoes_hand_edits_of_beat_schedules(make_policy):
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    policy = make_policy(selector_value="a=b", cron="30 4 * * *")
    task = PeriodicTask.objects.get(name=policy.periodic_task_name)
    task.crontab = CrontabSchedule.objects.create(minute="0", hour="*")
    task.enabled = False
    task.save()

    out = call("sync_policy_schedules")

    task.refresh_from_db()
    assert "1 policy" in out
    assert (task.crontab.minute, task.crontab.hour, task.enabled) == ("30", "4", True)
