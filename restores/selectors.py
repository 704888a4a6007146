"""Reads for the restore pages: database only."""

from django.core.paginator import Paginator

from restores.models import Restore
from volumes.models import Container, Volume
from volumes.selectors import volume_users

PAGE_SIZE = 50


def restore_detail(*, restore_id: int) -> Restore | None:
    return (Restore.objects.select_related("job__created_by", "backup", "safety_backup")
            .filter(pk=restore_id).first())


def restore_page(*, page, volume: str = "", host: str = "", who=None):
    """`who` (a request or user): their teams' restores (accounts.scoping); None: all.
    `host`: restores into that host's volumes ("" = every host)."""
    from accounts import scoping
    from hosts.selectors import ref_host_q

    qs = (Restore.objects.all() if who is None else scoping.visible_restores(who)).select_related(
        "job__created_by", "backup__job")  # backup__job: the origin badge reads the backup's job (an N+1 otherwise)
    if volume:
        qs = qs.filter(volume_name=volume)
    if host:
        qs = qs.filter(ref_host_q("volume_name", host))
    return Paginator(qs, PAGE_SIZE).get_page(page)


def running_users(*, volume_name: str) -> list[Container]:
    """Running containers that mount the volume, as the mirror knows them: what a restore
    in place stops and restarts."""
    volume = Volume.objects.present().filter(name=volume_name).first()
    return [c for c in volume_users(volume=volume) if c.state == "running"] if volume else []
