"""Restore drills, web and beat side: start one, start the due ones, read what they proved.

A policy with `drill_every_days` > 0 drills each volume it covers that often: the newest
restorable backup is restored into a scratch volume by a worker (drills.worker). A volume
is "proven restorable" at the end of its latest succeeded drill.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.services import audit_record
from backups.models import Backup
from drills.models import Drill
from jobs.models import Job
from jobs.services import job_create
from project.errors import Refused

KIND_DRILL = "restore_drill"
SCRATCH_PREFIX = "cargohold-drill-"
SCRATCH_LABEL = "cargohold.drill"


def newest_restorable(volume_name: str) -> Backup | None:
    return (Backup.objects.filter(volume_name=volume_name, status=Job.Status.SUCCEEDED, missing=False)
            .exclude(key="").order_by("-created_at", "-id").first())


def drill_start(*, backup: Backup, policy=None, user=None, trigger: str = "user", queue: str | None = None) -> Drill:
    """Queue a drill of `backup` (its job runs in a worker). Refused for a backup that
    cannot be restored, or while a drill of the same volume is queued or running."""
    if not backup.is_restorable:
        raise Refused(f"Backup #{backup.pk} cannot be restored ({backup.status}{', missing' if backup.missing else ''});"
                      " there is nothing to drill.")
    with transaction.atomic():
        if Drill.objects.filter(volume_name=backup.volume_name, status__in=Job.ACTIVE).exists():
            raise Refused(f"A restore drill of {backup.volume_name} is already queued or running.")
        job = job_create(kind=KIND_DRILL, target=backup.volume_name, params={"backup": backup.pk},
                         user=user, trigger=trigger, progress_total=backup.size_bytes, queue=queue)
        drill = Drill.objects.create(job=job, policy=policy, backup=backup, backup_ref=backup.pk,
                                     volume_name=backup.volume_name)
        audit_record(action="drill_start", actor=user, object_type="volume", object_name=backup.volume_name,
                     params={"drill": drill.pk, "backup": backup.pk, "policy": getattr(policy, "pk", None),
                             "trigger": trigger})
    return drill


def drills_start_due(*, now: datetime | None = None) -> list[Drill]:
    """Beat: for every enabled policy that drills, each covered volume whose last drill
    under it is older than its interval (or that has none) gets one of its newest backup."""
    from policies import selection
    from policies.models import BackupPolicy

    now = now or timezone.now()
    started = []
    for policy in BackupPolicy.objects.filter(enabled=True, drill_every_days__gt=0):
        try:
            names = selection.selected_volume_names(policy.selection)
        except Exception:  # an invalid selection is the policy page's to report
            continue
        since = now - timedelta(days=policy.drill_every_days)
        recent = set(Drill.objects.filter(policy=policy, volume_name__in=names, created_at__gte=since)
                     .values_list("volume_name", flat=True))
        for name in names:
            backup = newest_restorable(name) if name not in recent else None
            if backup is None:
                continue
            try:
                started.append(drill_start(backup=backup, policy=policy, trigger="schedule"))
            except Refused:
                continue
    return started


def last_proven(volume_names=None) -> dict[str, datetime]:
    """Volume name -> the end of its latest succeeded drill ("last proven restorable")."""
    drills = Drill.objects.filter(status=Job.Status.SUCCEEDED)
    if volume_names is not None:
        drills = drills.filter(volume_name__in=list(volume_names))
    return dict(drills.values("volume_name").annotate(at=Max("finished_at")).values_list("volume_name", "at"))


def failed_last(volume_names=None) -> dict[str, Drill]:
    """Volume name -> its latest ended drill, for the volumes where that drill failed."""
    ended = Drill.objects.exclude(status__in=Job.ACTIVE)
    if volume_names is not None:
        ended = ended.filter(volume_name__in=list(volume_names))
    latest = ended.order_by().values("volume_name").annotate(last=Max("pk")).values_list("last", flat=True)
    return {d.volume_name: d for d in Drill.objects.filter(pk__in=list(latest), status=Job.Status.FAILED)}
