"""Policy services against the database, the real engine and real storage; backups run
in this process with the real job runner and handler (fast), one behaviour each."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import AuditEvent
from backups.models import Backup
from backups.services import backup_start
from backups.storage import get_storage
from jobs.models import Job
from policies import monitoring, pruning, runs as policy_runs, services
from policies.models import BackupPolicy, Notification, NotificationSettings, PolicyRun, VolumeAlert
from project.errors import CargoholdError
from tests import dockercli
from tests.policies.conftest import run_backups, run_verify_jobs
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True)]


def label() -> str:
    return f"chtest.policy={dockercli.unique_name('sel')}"


def run_now(policy, **kw):
    return services.policy_run_now(policy=policy, **kw)


def follow():
    """What the periodic check does for runs: the safety net beside job_ended, pruning,
    notifying."""
    policy_runs.runs_follow()
    pruning.runs_prune_pending()
    monitoring.runs_notify_outcomes()


# --- saving and beat's schedule ----------------------------------------------------------------


def test_saving_a_policy_keeps_its_periodic_task_in_step(make_policy):
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    policy = make_policy(selector_value="team=shop", cron="30 2 * * 1-5", timezone="Europe/Berlin")
    task = PeriodicTask.objects.get(name=policy.periodic_task_name)
    assert task.task == "policies.tasks.policy_due" and task.args == f"[{policy.pk}]" and task.enabled
    c = task.crontab
    assert (c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week) == ("30", "2", "*", "*", "1-5")
    assert str(c.timezone) == "Europe/Berlin"
    assert 0 < task.expire_seconds < 86400
    changed = PeriodicTasks.last_change()

    task.last_run_at = timezone.now() - timedelta(days=1)
    task.save()
    policy.cron = "@hourly"
    services.policy_save(policy=policy)
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour) == ("0", "*")
    assert task.last_run_at is None  # a new schedule does not "catch up" the old one's due time
    assert PeriodicTasks.last_change() > changed  # what tells a running beat to reload

    services.policy_set_enabled(policy=policy, enabled=False)
    task.refresh_from_db()
    assert not task.enabled

    services.policy_delete(policy=policy)
    assert not PeriodicTask.objects.filter(name=policy.periodic_task_name).exists()
    assert AuditEvent.objects.filter(action="policy_delete", object_name="nightly").exists()


@pytest.mark.parametrize("fields, says", [
    ({"cron": "61 * * * *"}, "minute field"),
    ({"selector_value": ""}, "label selector"),
    ({"selector_kind": "names", "selector_value": "bad/name"}, "Not a valid volume name"),
    ({"keep_last": 0}, "keep nothing"),
    ({"timezone": "Nowhere/City"}, "time zone"),
])
def test_bad_policies_are_refused_and_nothing_is_saved(fields, says):
    from django_celery_beat.models import PeriodicTask

    data = {"name": "p", "selector_kind": "label", "selector_value": "a=b", "cron": "0 2 * * *", "keep_last": 1}
    data.update(fields)
    with pytest.raises(CargoholdError, match=says):
        services.policy_save(policy=BackupPolicy(**data))
    assert not BackupPolicy.objects.exists() and not PeriodicTask.objects.filter(name__startswith="cargohold-").exists()


# --- running ----------------------------------------------------------------------------------------


@pytest.mark.engine
def test_a_run_backs_up_each_selected_volume_and_picks_up_volumes_created_later(
    make_policy, labelled_volumes, no_enqueue, backup_root
):
    sel = label()
    first = labelled_volumes(2, sel)
    dockercli.create_volume()  # not selected
    mirror_sync()
    policy = make_policy(selector_value=sel)

    runs = run_now(policy)
    assert sorted(r.volume_name for r in runs) == sorted(first)
    assert all(r.status == "queued" and r.backup.origin == "schedule" for r in runs)
    run_backups(runs)
    follow()
    assert set(PolicyRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)) == {"succeeded"}

    later = labelled_volumes(1, sel)
    runs = run_now(policy)
    assert sorted(r.volume_name for r in runs) == sorted(first + later)


@pytest.mark.engine
def test_a_due_time_while_the_previous_run_is_still_going_is_skipped(make_policy, labelled_volumes, no_enqueue):
    [name] = labelled_volumes(1, label(), fill=False)
    policy = make_policy(selector_value=label_of(name))
    [first] = run_now(policy)
    assert first.status == "queued"

    [second] = policy_runs.policy_run(policy=policy, scheduled_for=timezone.now() + timedelta(minutes=1))
    assert second.status == "skipped"
    assert f"#{first.pk}" in second.message and "still queued" in second.message
    assert Backup.objects.filter(volume_name=name).count() == 1


def label_of(volume: str) -> str:
    from volumes.models import Volume

    labels = Volume.objects.get(name=volume).labels
    return next(f"{k}={v}" for k, v in labels.items() if k == "chtest.policy")


@pytest.mark.engine
def test_a_repeated_tick_starts_nothing_twice(make_policy, labelled_volumes, no_enqueue):
    names = labelled_volumes(2, label(), fill=False)
    policy = make_policy(selector_value=label_of(names[0]), cron="*/5 * * * *")
    now = timezone.now().replace(minute=10, second=1)
    first = policy_runs.policy_tick(policy_id=policy.pk, now=now)
    again = policy_runs.policy_tick(policy_id=policy.pk, now=now + timedelta(seconds=20))
    assert len(first) == 2 and again == []
    assert {r.scheduled_for for r in first} == {now.replace(second=0, microsecond=0)}
    assert policy_runs.policy_run(policy=policy, scheduled_for=first[0].scheduled_for) == []
    assert Backup.objects.filter(volume_name__in=names).count() == 2

    # A worker that died halfway through a tick: the repeated tick completes it.
    half = first[1]
    Backup.objects.filter(pk=half.backup_ref).delete()
    half.delete()
    [completed] = policy_runs.policy_tick(policy_id=policy.pk, now=now + timedelta(seconds=30))
    assert completed.volume_name == half.volume_name and completed.status == "queued"
    assert Backup.objects.filter(volume_name__in=names).count() == 2


@pytest.mark.engine
def test_an_explicit_name_that_does_not_exist_fails_its_run(make_policy, no_enqueue):
    policy = make_policy(selector_kind="names", selector_value="chtest-no-such-volume-here")
    [run] = run_now(policy)
    assert run.status == "failed" and "No volume named" in run.message


@pytest.mark.engine
def test_a_selection_matching_nothing_records_a_skipped_run(make_policy, no_enqueue):
    policy = make_policy(selector_value=label())
    [run] = run_now(policy)
    assert run.status == "skipped" and run.volume_name == "" and "No volume matches" in run.message


# --- failure, pruning, notifications --------------------------------------------------------------


def _notify_by_email():
    NotificationSettings.objects.create(email_enabled=True, email_to="ops@example.com", on_failure=True,
                                        on_success=False)


def _deliver_all():
    from policies.models import Delivery
    from policies.notify import delivery_attempt

    for d in Delivery.objects.filter(status="pending"):
        delivery_attempt(delivery_id=d.pk)


@pytest.mark.engine
def test_a_failed_backup_fails_the_run_prunes_nothing_and_notifies_once(
    make_policy, labelled_volumes, no_enqueue, backup_root
):
    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), keep_last=1)
    for _ in range(2):
        runs = run_now(policy)
        run_backups(runs)
        follow()
    assert Backup.objects.filter(volume_name=name, status="succeeded").count() == 1  # keep_last=1 pruned one
    _notify_by_email()

    runs = run_now(policy)
    dockercli.docker("volume", "rm", name)  # gone before its backup runs
    run_backups(runs)
    follow()
    run = PolicyRun.objects.get(pk=runs[0].pk)
    assert run.status == "failed" and "no longer exists" in run.message
    assert run.prune_state == ""  # never pruned after a failure
    assert Backup.objects.filter(volume_name=name, status="succeeded").count() == 1
    _deliver_all()
    follow()
    _deliver_all()
    assert len(mail.outbox) == 1
    assert name in mail.outbox[0].subject and "failed" in mail.outbox[0].subject
    assert Notification.objects.filter(event="run_failed").count() == 1


@pytest.mark.engine
def test_pruning_keeps_by_the_rules_and_never_touches_manual_or_kept_backups(
    make_policy, labelled_volumes, no_enqueue, backup_root
):
    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), keep_last=2)
    manual = backup_start(volume_name=name)
    run_backups_of([manual])
    made = []
    for i in range(4):
        runs = run_now(policy)
        run_backups(runs)
        if i == 0:
            Backup.objects.filter(pk=runs[0].backup_ref).update(keep=True)
        made.append(runs[0].backup_ref)
        follow()
    remaining = set(Backup.objects.filter(volume_name=name).values_list("pk", flat=True))
    assert remaining == {manual.pk, made[0], made[2], made[3]}
    deleted = made[1]
    assert AuditEvent.objects.filter(action="retention_delete", object_name=str(deleted), result="ok").exists()
    assert AuditEvent.objects.filter(action="backup_delete", object_name=str(deleted)).exists()
    keys = set(get_storage().list_keys(prefix=f"{name}/"))
    # Every object left (archive, manifest, file index) belongs to a backup that is kept.
    assert all(not k.startswith(f"{name}/") or Backup.objects.filter(
        key=k.removesuffix(".manifest.json").removesuffix(".index.jsonl.zst")).exists() for k in keys)
    last = PolicyRun.objects.filter(policy=policy).order_by("-pk").first()
    assert last.prune_state == "done"


def run_backups_of(backups):
    from jobs.runner import job_perform

    for b in backups:
        job_perform(b.job_id)


@pytest.mark.engine
@pytest.mark.parametrize("breakage", ["listing raises", "storage empty"])
def test_storage_unavailable_during_pruning_deletes_nothing_and_says_so(
    make_policy, labelled_volumes, no_enqueue, backup_root, monkeypatch, settings, tmp_path, breakage
):
    from backups import storage as storage_module

    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), keep_last=1)
    runs = []
    for _ in range(2):
        runs += run_now(policy)
        # The prune at the job's end does not happen (the worker died right after the job
        # ended): the periodic check prunes later, when the storage has gone away.
        with monkeypatch.context() as m:
            m.setattr(pruning, "runs_prune_pending", lambda: None)
            run_backups(runs[-1:])
    assert set(PolicyRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("prune_state", flat=True)) \
        == {"pending"}
    before = set(Backup.objects.filter(volume_name=name).values_list("pk", flat=True))
    if breakage == "listing raises":
        def broken(self, prefix=""):
            raise storage_module.StorageError("The backup folder is not mounted (Input/output error).")
            yield  # pragma: no cover

        monkeypatch.setattr(storage_module.LocalStorage, "list_keys", broken)
    else:
        settings.BACKUP_ROOT = tmp_path / "unmounted"  # an empty mount point
    follow()
    assert set(Backup.objects.filter(volume_name=name).values_list("pk", flat=True)) == before
    run = PolicyRun.objects.get(pk=runs[-1].pk)
    assert run.status == "succeeded"
    if breakage == "listing raises":
        assert run.prune_state == "failed" and "could not be listed" in run.prune_message
    else:
        assert run.prune_state == "refused" and "empty" in run.prune_message
    assert not AuditEvent.objects.filter(action="retention_delete").exists()


@pytest.mark.engine
def test_verify_after_backup_reads_the_archive_again_before_the_run_succeeds(
    make_policy, labelled_volumes, no_enqueue, backup_root
):
    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), verify_after_backup=True)
    runs = run_now(policy)
    run_backups(runs)
    follow()
    run = PolicyRun.objects.get(pk=runs[0].pk)
    assert run.status == "running" and run.verify_job_id
    run_verify_jobs([run])
    follow()
    run.refresh_from_db()
    assert run.status == "succeeded" and "verified again" in run.message


# --- missed, overdue, protection -------------------------------------------------------------------


def test_missed_due_times_are_recorded_once_and_grouped(make_policy, settings):
    settings.POLICY_MISSED_GRACE_SECONDS = 300
    policy = make_policy(selector_value="a=b", cron="0 * * * *")
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    BackupPolicy.objects.filter(pk=policy.pk).update(schedule_checked_until=now - timedelta(hours=5))
    ran = now.replace(minute=0) - timedelta(hours=2)  # one due time did run
    job = Job.objects.create(kind="backup", status="succeeded", finished_at=ran)
    PolicyRun.objects.create(policy=policy, volume_name="v", scheduled_for=ran, job=job)
    assert PolicyRun.objects.get(job=job).status == "succeeded"

    recorded = monitoring.policies_detect_missed(now=now)
    assert [(r.scheduled_for, r.status) for r in recorded] == [
        (now.replace(minute=0) - timedelta(hours=4), "missed"),
        (now.replace(minute=0) - timedelta(hours=1), "missed"),
    ]
    assert "Missed 2 due times" in recorded[0].message
    assert monitoring.policies_detect_missed(now=now) == []
    assert monitoring.policies_detect_missed(now=now + timedelta(minutes=10)) == []


def test_disabled_policies_are_not_reported_missed(make_policy):
    policy = make_policy(selector_value="a=b", cron="* * * * *", enabled=False)
    BackupPolicy.objects.filter(pk=policy.pk).update(schedule_checked_until=timezone.now() - timedelta(hours=1))
    assert monitoring.policies_detect_missed() == []


@pytest.mark.engine
def test_an_overdue_volume_is_notified_once_per_episode(make_policy, labelled_volumes, no_enqueue, backup_root):
    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), cron="* * * * *", overdue_grace_minutes=1)
    NotificationSettings.objects.create(email_enabled=True, email_to="ops@example.com", on_overdue=True)
    now = timezone.now()
    assert monitoring.volumes_check_overdue(now=now) == []  # covered a moment ago: not yet
    later = now + timedelta(minutes=5)
    assert monitoring.volumes_check_overdue(now=later) == [name]
    assert monitoring.volumes_check_overdue(now=later + timedelta(minutes=1)) == []
    _deliver_all()
    assert len(mail.outbox) == 1 and "overdue" in mail.outbox[0].subject

    runs = run_now(policy)
    run_backups(runs)
    follow()
    monitoring.volumes_check_overdue(now=timezone.now())
    assert not VolumeAlert.objects.filter(volume_name=name, closed_at__isnull=True).exists()
    assert monitoring.volumes_check_overdue(now=timezone.now() + timedelta(minutes=5)) == [name]  # a new episode


@pytest.mark.engine
def test_protection_states(make_policy, labelled_volumes, no_enqueue, backup_root, settings):
    from jobs.locks import lock_acquire, lock_release, volume_lock
    from policies.selectors import health_summary, protection_map

    sel = label()
    covered, failing = labelled_volumes(2, sel)
    in_use = dockercli.create_volume()
    unused = dockercli.create_volume()
    dockercli.run_container(f"{in_use}:/data")
    mirror_sync()
    policy = make_policy(selector_value=sel)
    runs = run_now(policy)
    failing_run = next(r for r in runs if r.volume_name == failing)
    # Busy with another operation, and the backup may not wait: it is refused, the run fails.
    settings.BACKUP_LOCK_WAIT_SECONDS = 0
    lock_acquire(resource=volume_lock(failing), owner="test: a restore", ttl=timedelta(minutes=5))
    try:
        run_backups(runs)
    finally:
        lock_release(resource=volume_lock(failing), owner="test: a restore")
    follow()

    p = protection_map(names=[covered, failing, in_use, unused])
    assert p[covered].state == "ok" and p[covered].policy_names == ["nightly"] and p[covered].last_success_at
    assert p[failing].state == "failed" and p[failing].last_run.pk == failing_run.pk
    assert "busy" in p[failing].last_run.message
    assert p[in_use].state == "unprotected-in-use"
    assert p[unused].state == "unprotected"
    summary = health_summary()
    assert in_use in [x.volume for x in summary.unprotected_in_use]
    assert summary.covered >= 1


# --- runs follow their jobs (job_ended), imports are nobody's protection ---------------------------


@pytest.mark.engine
def test_a_run_moves_on_when_its_backups_job_ends_without_anyone_following(
    make_policy, labelled_volumes, no_enqueue, backup_root
):
    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), keep_last=1)
    NotificationSettings.objects.create(email_enabled=True, email_to="ops@example.com", on_success=True)
    first = run_now(policy)
    run_backups(first)
    second = run_now(policy)
    assert PolicyRun.objects.get(pk=second[0].pk).status == "queued"  # not skipped: the first one ended
    run_backups(second)  # no follow(): the jobs' end moved the runs on

    run = PolicyRun.objects.get(pk=second[0].pk)
    job = Job.objects.get(pk=run.job_id)
    assert run.status == "succeeded" and (run.started_at, run.finished_at) == (job.started_at, job.finished_at)
    assert run.prune_state == "done"  # keep_last=1: the first run's backup went
    assert list(Backup.objects.filter(volume_name=name).values_list("pk", flat=True)) == [run.backup_ref]
    assert Notification.objects.filter(event="run_succeeded").count() == 2
    assert set(PolicyRun.objects.filter(policy=policy, status__in=("succeeded",)).values_list("pk", flat=True)) \
        == {first[0].pk, run.pk}


@pytest.mark.engine
def test_the_verify_job_starts_when_the_backups_job_ends(make_policy, labelled_volumes, no_enqueue, backup_root):
    [name] = labelled_volumes(1, label())
    policy = make_policy(selector_value=label_of(name), verify_after_backup=True)
    runs = run_now(policy)
    run_backups(runs)  # no follow()

    run = PolicyRun.objects.get(pk=runs[0].pk)
    assert run.status == "running" and run.verify_job_id and run.message == "Verifying the stored archive."
    assert ("jobs.tasks.run_job", (run.verify_job_id,)) in no_enqueue
    assert PolicyRun.objects.active().filter(pk=run.pk).exists()
    run_verify_jobs([run])
    run = PolicyRun.objects.get(pk=run.pk)
    assert run.status == "succeeded" and "verified again" in run.message and run.prune_state == "done"
    # Only the policy's setting at the time counts: turning it off does not rewrite history.
    policy.verify_after_backup = False
    services.policy_save(policy=policy)
    assert PolicyRun.objects.get(pk=run.pk).message.endswith("verified again.")


@pytest.mark.engine
def test_a_backup_cancelled_while_queued_fails_its_run_and_is_notified(make_policy, labelled_volumes, no_enqueue):
    from jobs.services import job_request_cancel, jobs_end_pending

    [name] = labelled_volumes(1, label(), fill=False)
    policy = make_policy(selector_value=label_of(name))
    _notify_by_email()
    [run] = run_now(policy)
    job_request_cancel(job=Job.objects.get(pk=run.job_id))
    assert PolicyRun.objects.get(pk=run.pk).status == "failed"  # read through the job at once
    jobs_end_pending()  # the sweep ends it (on_end, job_ended) in the worker

    run = PolicyRun.objects.get(pk=run.pk)
    assert run.status == "failed" and "Cancelled" in run.message and run.notified and run.prune_state == ""
    _deliver_all()
    assert len(mail.outbox) == 1 and "failed" in mail.outbox[0].subject


@pytest.mark.engine
def test_an_imported_archive_under_a_volumes_name_does_not_protect_it(make_policy, labelled_volumes):
    from policies.selectors import protection_map
    from volumes.models import Volume

    [name] = labelled_volumes(1, label(), fill=False)
    make_policy(selector_value=label_of(name), cron="* * * * *", overdue_grace_minutes=1)
    volume = Volume.objects.get(name=name)
    later = timezone.now() + timedelta(minutes=5)
    imported = Job.objects.create(kind="archive_import", status="succeeded", finished_at=later)
    Backup.objects.create(job=imported, volume=volume, volume_name=name, origin=Backup.Origin.IMPORTED, key="k1")

    p = protection_map(names=[name], now=later)[name]
    assert p.last_success_at is None and p.overdue and "no successful backup" in p.overdue_detail
    assert monitoring.volumes_check_overdue(now=later) == [name]

    own = Job.objects.create(kind="backup", status="succeeded", finished_at=later)
    Backup.objects.create(job=own, volume=volume, volume_name=name, origin=Backup.Origin.MANUAL, key="k2")
    p = protection_map(names=[name], now=later)[name]
    assert p.last_success_at == later and not p.overdue
