"""Reads for the restore pages: database only."""

from django.core.paginator import Paginator

from restores.models import Restore
from volumes.models import Container, Volume
from volumes.selectors import volume_users

PAGE_SIZE = 50


def restore_detail(*, restore_id: int) -> Restore | None:
    return (Restore.objects.select_related("job__created_by", "backup", "safety_backup")
            .filter(pk=restore_id).first())


def restore_page(*, page, volume: str = "", who=None):
    """`who` (a request or user): their teams' restores (accounts.scoping); None: all."""
    from accounts import scoping

    qs = (Restore.objects.all() if who is None else scoping.visible_restores(who)).select_related("job__created_by", "backup")
    if volume:
        qs = qs.filter(volume_name=volume)
    return Paginator(qs, PAGE_SIZE).get_page(page)


def running_users(*, volume_name: str) -> list[Container]:
    """Running containers that mount the volume, as the mirror knows them: what a restore
    in place stops and restarts."""
    volume = Volume.objects.present().filter(name=volume_name).first()
    return [c for c in volume_users(volume=volume) if c.state == "running"] if volume else []
