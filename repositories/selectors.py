"""Reading repositories."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from repositories.models import Repository

LOCAL_NAME = "local"


def repository_default() -> Repository:
    """The repository used when none is named: the one marked default, else the local
    folder (BACKUP_ROOT), made on first use."""
    repo = Repository.objects.filter(is_default=True).first()
    if repo is not None:
        return repo
    try:
        with transaction.atomic():
            repo, _ = Repository.objects.get_or_create(
                name=LOCAL_NAME, defaults={"url": str(settings.BACKUP_ROOT), "format": Repository.Format.ARCHIVE, "builtin": True,
                                           "is_default": not Repository.objects.filter(is_default=True).exists()})
    except IntegrityError:
        repo = Repository.objects.get(name=LOCAL_NAME)
    return repo


def repository_named(name: str | None) -> Repository:
    """The repository called `name`, or the default one for None/""."""
    if not name:
        return repository_default()
    try:
        return Repository.objects.get(name=name)
    except Repository.DoesNotExist:
        from project.errors import CargoholdError

        names = ", ".join(Repository.objects.values_list("name", flat=True)) or "none yet"
        raise CargoholdError(f"There is no repository called {name!r} (there are: {names}).") from None


def repositories_with_counts():
    """The repositories page's rows: each with its backups' count (the built-in folder's
    include rows from before repositories)."""
    from django.db.models import Count

    from backups.models import Backup

    rows = list(Repository.objects.annotate(backups_count=Count("backups")).order_by("-builtin", "name"))
    unassigned = Backup.objects.filter(repository__isnull=True).count()
    for repo in rows:
        if repo.builtin:
            repo.backups_count += unassigned
    return rows
