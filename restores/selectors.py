"""Reads for the restore pages: database only."""

from django.core.paginator import Paginator

from restores.models import Restore
from volumes.models import Container

PAGE_SIZE = 50


def restore_detail(*, restore_id: int) -> Restore | None:
    return (Restore.objects.select_related("job", "backup", "safety_backup", "created_by")
            .filter(pk=restore_id).first())


def restore_page(*, page, volume: str = ""):
    qs = Restore.objects.select_related("job", "backup", "created_by")
    if volume:
        qs = qs.filter(volume_name=volume)
    return Paginator(qs, PAGE_SIZE).get_page(page)



def running_users(*, volume_name: str) -> list[Container]:
    """Running containers that mount the volume: what a restore in place stops and restarts."""
    return list(Container.objects.present().filter(mounts__volume__name=volume_name, state="running")
                .distinct().order_by("name"))
