"""Scheduling end to end: a real celery beat (DatabaseScheduler) and a real worker.

One test, about a minute of wall time: a policy created while beat runs (no restart) with
a due time beat missed, so beat catches it up at once; then the next minute's tick. The
first run of one volume is kept busy (its lock is held, as by a long restore), so that
tick records it as skipped instead of queueing a second backup; retention (keep last 1)
prunes the other volume's older backup after its second run.
"""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from backups.models import Backup
from jobs.locks import lock_acquire, lock_release, volume_lock
from policies import services
from policies.models import BackupPolicy, PolicyRun
from tests import dockercli
from tests.conftest import beat_process, wait_for
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.engine]

SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


def runs(volume: str) -> list[PolicyRun]:
    return list(PolicyRun.objects.filter(volume_name=volume).order_by("scheduled_for"))


def test_beat_runs_a_minutely_policy_and_skips_an_overlap(celery_worker, settings):
    from django_celery_beat.models import PeriodicTask

    sel = dockercli.unique_name("beat")
    quick, busy = (dockercli.create_volume(labels={"chtest.beat": sel}) for _ in range(2))
    for name in (quick, busy):
        dockercli.fill_volume(name, "echo data > /data/file")
    mirror_sync()
    # Held as another operation on the volume would: its backup waits (running) meanwhile.
    lock_acquire(resource=volume_lock(busy), owner="test: a long restore", ttl=timedelta(minutes=10))

    beat = beat_process(scheduler=SCHEDULER).start()
    try:
        with transaction.atomic():  # beat reloads when this commits: no restart
            policy = services.policy_save(policy=BackupPolicy(
                name="every minute", selector_kind="label", selector_value=f"chtest.beat={sel}",
                cron="* * * * *", keep_last=1,
            ))
            # It came due while beat was not looking: beat catches that up at once.
            PeriodicTask.objects.filter(name=policy.periodic_task_name).update(
                last_run_at=timezone.now() - timedelta(minutes=2)
            )
        wait_for(lambda: len(runs(quick)) >= 1 and len(runs(busy)) >= 1, timeout=30,
                 message=f"beat's first tick (log: {beat.log_path})")
        first_busy = runs(busy)[0]
        wait_for(lambda: len(runs(quick)) >= 2 and len(runs(busy)) >= 2, timeout=75,
                 message=f"the next minute's tick (log: {beat.log_path})")
    finally:
        beat.stop()

    try:
        q1, q2 = runs(quick)[:2]
        b1, b2 = runs(busy)[:2]
        assert {q1.trigger, q2.trigger} == {"schedule"}
        assert q2.scheduled_for - q1.scheduled_for == timedelta(minutes=1)
        assert (b1.pk, b1.scheduled_for) == (first_busy.pk, q1.scheduled_for)
        assert b2.status == "skipped" and f"#{b1.pk}" in b2.message
        assert Backup.objects.filter(volume_name=busy).count() == 1  # not queued twice
    finally:
        lock_release(resource=volume_lock(busy), owner="test: a long restore")

    def settled():  # no following here: the worker's job_ended receiver moves the runs on
        return all(r.status == "succeeded" for r in (*runs(quick)[:2], runs(busy)[0])) and \
            PolicyRun.objects.filter(pk=q2.pk, prune_state="done").exists()

    wait_for(settled, timeout=60, message="the runs to finish and the worker to prune")
    # keep_last=1: the worker pruned the quick volume's first backup after its second run.
    assert list(Backup.objects.filter(volume_name=quick).values_list("pk", flat=True)) == [q2.backup_ref]
    assert Backup.objects.filter(volume_name=busy, status="succeeded").count() == 1
