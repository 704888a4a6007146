"""Backups, web side: start a backup (one or many), a verification, a deletion.

The web process and the CLI call these: they check what the database can tell, create
the rows and the job (enqueued on commit) and audit the request. The worker performs
the jobs (backups.worker); nothing here calls the engine or writes to storage.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

import tarstream
from accounts.services import audit_record
from backups.models import Backup
from jobs.locks import backup_lock, lock_holder
from jobs.models import Job
from jobs.services import job_create
from project.errors import CargoholdError, Refused
from volumes.models import Volume

KIND_BACKUP = "backup"
KIND_VERIFY = "backup_verify"
KIND_DELETE = "backup_delete"
KIND_FOUND = "backup_found"  # a backup the catalogue rescan found in storage: ended when recorded
STOP_LABEL = "cargohold.stop-during-backup"  # on a volume: default; on a container: always


def lock_wait_seconds() -> float:
    """How long an operation on a volume waits for another one to finish before it is refused."""
    return float(settings.BACKUP_LOCK_WAIT_SECONDS)


def stop_label_set(labels: dict | None) -> bool:
    """`cargohold.stop-during-backup=true`: on a container, it is stopped whatever the form
    says; on a volume, stopping is the form's default."""
    return str((labels or {}).get(STOP_LABEL, "")).lower() == "true"


def stops_by_default(volume: Volume | None) -> bool:
    """The per-volume default of the consistency option (the volume's label)."""
    return bool(volume) and stop_label_set(volume.labels)


def backup_start(
    *,
    volume_name: str,
    user=None,
    trigger: str = "user",
    origin: str = Backup.Origin.MANUAL,
    stop_containers: bool | None = None,
    compression: str = Backup.Compression.ZSTD,
    queue: str | None = None,
    request=None,
    repository=None,
) -> Backup:
    """Queue a backup of a volume known to the mirror: a Backup row and its job.

    `stop_containers=None` takes the volume's default (its `cargohold.stop-during-backup`
    label). `repository` (a Repository, or its name) is where the worker writes it;
    None: the default repository. The job is enqueued when the transaction commits, with
    only its id (on `queue` when given, else the default queue).
    """
    from repositories.models import Repository
    from repositories.selectors import repository_named

    if not isinstance(repository, Repository):
        repository = repository_named(repository)
    if compression not in tarstream.COMPRESSIONS:
        raise Refused(f"Unknown compression {compression!r}: choose zstd or gzip.")
    if origin not in Backup.Origin.values:
        raise Refused(f"Unknown origin {origin!r}.")
    volume = Volume.objects.filter(name=volume_name).first()
    if volume is None:
        raise Refused(f"No volume named {volume_name!r} is known. Is the inventory up to date?")
    if volume.is_gone:
        raise Refused(f"The volume {volume_name} is no longer on the engine; there is nothing to back up.")
    if stop_containers is None:
        stop_containers = stops_by_default(volume)
    with transaction.atomic():
        job = job_create(
            kind=KIND_BACKUP,
            target=volume.name,
            params={"stop_containers": stop_containers, "compression": compression, "origin": origin,
                    "repository": repository.name},
            user=user,
            trigger=trigger,
            progress_total=volume.size_bytes,
            queue=queue,
        )
        backup = Backup.objects.create(
            job=job,
            volume=volume,
            volume_name=volume.name,
            origin=origin,
            compression=compression,
            stop_containers=stop_containers,
            bytes_expected=volume.size_bytes,
            repository=repository,
            storage="restic" if repository.is_restic else "local",  # the worker names its storage
        )
        audit_record(
            action="backup_start",
            actor=user,
            request=request,
            object_type="volume",
            object_name=volume.name,
            params={"backup": backup.pk, "job": job.pk, "compression": compression,
                    "stop_containers": stop_containers, "origin": origin, "trigger": trigger,
                    "repository": repository.name},
        )
    return backup


def backups_start_many(
    *, volume_names: list[str], user=None, trigger: str = "user", stop_containers: bool | None = None,
    compression: str = Backup.Compression.ZSTD, repository=None,
) -> tuple[list[Backup], list[str]]:
    """Queue one backup per volume (into `repository`, None: the default one); returns
    (started, refusals as messages)."""
    started, refused = [], []
    for name in dict.fromkeys(volume_names):  # keep order, drop duplicates
        try:
            started.append(
                backup_start(volume_name=name, user=user, trigger=trigger, repository=repository,
                             stop_containers=stop_containers, compression=compression)
            )
        except CargoholdError as exc:
            refused.append(str(exc))
    return started, refused


def backup_verify_check(backup: Backup) -> None:
    """Refuse to verify a backup that has no stored archive."""
    if backup.status != Backup.Status.SUCCEEDED or not (backup.key or backup.snapshot_id):
        raise Refused(f"Backup #{backup.pk} has no stored archive to verify ({backup.status}).")


def backup_verify_start(*, backup: Backup, user=None, trigger: str = "user") -> Job:
    """Queue a verification of a stored archive (the Verify button, the policies' checks)."""
    backup_verify_check(backup)
    with transaction.atomic():
        return job_create(
            kind=KIND_VERIFY, target=str(backup.pk), target_type="backup",
            params={"backup": backup.pk}, user=user, trigger=trigger, progress_total=backup.size_bytes,
        )


def backup_delete_check(backup: Backup) -> None:
    """Refuse to delete a backup that runs or that a pending roll-back needs."""
    if backup.is_active:
        raise Refused(f"Backup #{backup.pk} is still {backup.status}; cancel it first.")
    # `safety_for` is the restores app's link: a restore in place whose volume still has
    # to be put back from this backup needs it (deleting it would lose the old content).
    pending = getattr(backup, "safety_for", None)
    if pending is not None and pending.filter(rollback_pending=True).exists():
        raise Refused(
            f"Backup #{backup.pk} is the safety backup of a restore in place that still has to put "
            "the volume's previous content back; it cannot be deleted until that is done or dismissed."
        )


def backup_delete_start(*, backup: Backup, user=None, trigger: str = "user") -> Job:
    """Queue the deletion of a backup (the Delete button); refused at once when it would be.

    The worker deletes (backups.worker.backup_delete): in the Compose deployment the web
    process has the backup folder read-only.
    """
    backup_delete_check(backup)
    holder = lock_holder(resource=backup_lock(backup.pk))
    if holder is not None:
        raise Refused(f"Backup #{backup.pk} is in use: {holder.owner}.")
    with transaction.atomic():
        return job_create(
            kind=KIND_DELETE, target=f"#{backup.pk} of {backup.volume_name}",
            target_type="backup", params={"backup": backup.pk}, user=user, trigger=trigger,
        )
