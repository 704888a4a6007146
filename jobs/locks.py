"""One operation per resource at a time: named locks with an owner and an expiry.

`volume_lock(name)` is taken by everything that reads or writes a volume's data (backup,
restore, remove); `backup_lock(id)` while an archive is read (verify, restore), so it is
not deleted meanwhile. These two functions are the only places that spell the names.
"""

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.models import Job, ResourceLock


def volume_lock(name: str) -> str:
    return f"volume:{name}"


def backup_lock(backup_id: int) -> str:
    return f"backup:{backup_id}"


def repository_lock(repository_id: int) -> str:
    """restic's exclusive operations on one repository (forget, prune, check, unlock)."""
    return f"repository:{repository_id}"


class LockHeld(Exception):
    def __init__(self, lock: ResourceLock):
        self.lock = lock
        super().__init__(f"{lock.resource} is busy ({lock.owner})")


def lock_acquire(*, resource: str, owner: str, ttl: timedelta, job: Job | None = None) -> ResourceLock:
    """Take the lock on `resource` or raise LockHeld naming its holder.

    An expired lock is taken over: its holder is presumed dead (it stopped refreshing).
    """
    now = timezone.now()
    with transaction.atomic():
        ResourceLock.objects.filter(resource=resource, expires_at__lt=now).delete()
        try:
            with transaction.atomic():
                return ResourceLock.objects.create(
                    resource=resource, owner=owner, job=job, acquired_at=now, expires_at=now + ttl
                )
        except IntegrityError:
            pass
    held = ResourceLock.objects.filter(resource=resource).first()
    if held is None:  # released between our insert and our read: try once more
        return lock_acquire(resource=resource, owner=owner, ttl=ttl, job=job)
    raise LockHeld(held)


def lock_refresh(*, resource: str, owner: str, ttl: timedelta) -> bool:
    return bool(
        ResourceLock.objects.filter(resource=resource, owner=owner).update(expires_at=timezone.now() + ttl)
    )


def lock_release(*, resource: str, owner: str) -> None:
    ResourceLock.objects.filter(resource=resource, owner=owner).delete()


def lock_holder(*, resource: str) -> ResourceLock | None:
    return ResourceLock.objects.filter(resource=resource, expires_at__gte=timezone.now()).first()


def locks_release_ended() -> int:
    """Release the locks of jobs that ended (a killed worker never reached its `finally`),
    without waiting for their expiry."""
    return ResourceLock.objects.filter(job__isnull=False).exclude(job__status__in=Job.ACTIVE).delete()[0]
