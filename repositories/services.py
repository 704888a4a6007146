"""Repositories, web side: create, edit, delete, make default, and start their jobs
(test connection, restic init, a policy's copy of a backup).

Only Admins reach these from the page (repositories.views) and the CLI. Secrets arrive
as arguments, are encrypted on the row (Repository.set_secrets) and go nowhere else:
not into the audit trail, a job's params, a log line or a message. A restic
repository created without a password gets a generated one, returned once to the caller
(the page shows it once; the CLI prints it once).
"""

from __future__ import annotations

import re
import secrets as pysecrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from jobs.models import Job
from jobs.services import job_create
from project.errors import CargoholdError, Refused
from repositories.location import BadLocation, Location, parse_location
from repositories.models import Repository

KIND_CHECK = "repository_check"
KIND_INIT = "repository_init"
KIND_COPY = "backup_copy"

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SUBSET = re.compile(r"^(\d{1,3}(\.\d+)?%|\d+/\d+|\d+[KMGT]?)$")


class RepositoryInvalid(Refused):
    """Bad input for a repository: the message says which field and why."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclass
class Saved:
    repository: Repository
    generated_password: str = ""  # a restic password made here: show it once, keep it nowhere


def generate_password() -> str:
    """A strong restic repository password (256 bits, URL-safe text)."""
    return pysecrets.token_urlsafe(32)


def _folder(location: Location) -> str:
    return location.path.rstrip("/")


def _s3_overlap(a, b) -> bool:
    """Two S3 locations in one bucket of one server (host and port) whose prefixes
    nest: one repository's listing, deletions and clean-up would reach the other's objects."""
    from urllib.parse import urlsplit

    if not (a.is_s3 and b.is_s3) or a.bucket != b.bucket:
        return False
    ha, hb = urlsplit(a.endpoint), urlsplit(b.endpoint)
    if (ha.hostname, ha.port or (443 if ha.scheme == "https" else 80)) != \
            (hb.hostname, hb.port or (443 if hb.scheme == "https" else 80)):
        return False
    pa, pb = a.prefix.strip("/"), b.prefix.strip("/")
    return not pa or not pb or pa == pb or pa.startswith(pb + "/") or pb.startswith(pa + "/")


def repository_validate(*, name: str, url: str, format: str, region: str = "", verify_read_subset: str = "",
                        access_key_id: str | None = None, secret_access_key: str | None = None,
                        instance: Repository | None = None) -> Location:
    """Check what a repository would be; raises RepositoryInvalid naming the field.
    Nothing is saved here."""
    if instance is None and not NAME.match(name or ""):
        raise RepositoryInvalid("Use lowercase letters, digits, dashes and underscores (at most 64, starting "
                                "with a letter or digit).", field="name")
    if instance is None and Repository.objects.filter(name=name).exists():
        raise RepositoryInvalid(f"A repository called {name!r} exists already.", field="name")
    if format not in Repository.Format.values:
        raise RepositoryInvalid("Choose archive or restic.", field="format")
    try:
        location = parse_location(url)
    except BadLocation as exc:
        raise RepositoryInvalid(str(exc), field="url") from None
    if instance is not None and instance.builtin:
        return location
    if location.kind == "local":
        root = str(settings.BACKUP_ROOT).rstrip("/")
        folder = _folder(location)
        if folder == root or folder.startswith(root + "/") or root.startswith(folder + "/"):
            raise RepositoryInvalid(f"{folder} is (or holds, or is inside) the built-in backup folder {root}: "
                                    "choose a folder of its own.", field="url")
    others = Repository.objects.exclude(pk=instance.pk) if instance is not None else Repository.objects.all()
    for other in others.filter(builtin=False):
        try:
            theirs = other.location
        except BadLocation:
            continue
        if theirs == location or _s3_overlap(theirs, location) or (location.kind == "local" and theirs.kind == "local" and (
                _folder(theirs).startswith(_folder(location) + "/") or
                _folder(location).startswith(_folder(theirs) + "/"))):
            raise RepositoryInvalid(f"The repository {other.name} is there already (or overlaps it).", field="url")
    if region and not re.match(r"^[a-z0-9-]{1,64}$", region):
        raise RepositoryInvalid("A region looks like us-east-1 (lowercase letters, digits, dashes).", field="region")
    if verify_read_subset and not _SUBSET.match(verify_read_subset):
        raise RepositoryInvalid("restic's --read-data-subset: a percentage (5%), n/t (1/10) or a size (500M).",
                                field="verify_read_subset")
    for value, label in ((access_key_id, "access key id"), (secret_access_key, "secret access key")):
        if value and (len(value) > 1024 or any(c in value for c in "\r\n\x00")):
            raise RepositoryInvalid(f"The {label} has line breaks or is too long.",
                                    field="access_key_id" if label == "access key id" else "secret_access_key")
    if location.kind != "s3" and (access_key_id or secret_access_key):
        raise RepositoryInvalid("Access keys are for S3 locations only.", field="access_key_id")
    return location


def _params(repo: Repository, **extra) -> dict:
    """What the audit trail records: never a secret, only whether one is set."""
    return {"name": repo.name, "format": repo.format, "url": repo.url, "region": repo.region,
            "path_style": repo.path_style, "default": repo.is_default, "verify_read_subset": repo.verify_read_subset,
            "credentials": "set" if repo.has_credentials else "none",
            "password": "set" if repo.password_enc else "none", **extra}


def _set_default(repo: Repository) -> None:
    Repository.objects.filter(is_default=True).exclude(pk=repo.pk).update(is_default=False)
    Repository.objects.filter(pk=repo.pk).update(is_default=True)
    repo.is_default = True


def repository_create(*, name: str, url: str, format: str = Repository.Format.ARCHIVE, region: str = "",
                      path_style: bool = True, access_key_id: str = "", secret_access_key: str = "",
                      password: str = "", is_default: bool = False, verify_read_subset: str = "",
                      user=None, request=None, actor_name: str = "") -> Saved:
    """Create a repository (audited, without secrets). For restic, a password is
    generated when none is given (returned in `Saved.generated_password`, once) and a
    `repository_init` job is queued. S3 locations need both keys."""
    name, url, region = (name or "").strip(), (url or "").strip(), (region or "").strip()
    location = repository_validate(name=name, url=url, format=format, region=region,
                                   verify_read_subset=verify_read_subset, access_key_id=access_key_id,
                                   secret_access_key=secret_access_key)
    if location.kind == "s3" and not (access_key_id and secret_access_key):
        raise RepositoryInvalid("An S3 location needs an access key id and its secret access key.",
                                field="access_key_id")
    if password and format != Repository.Format.RESTIC:
        raise RepositoryInvalid("A password is for restic repositories only (archives are not encrypted).",
                                field="password")
    generated = ""
    if format == Repository.Format.RESTIC and not password:
        password = generated = generate_password()
    repo = Repository(name=name, url=location.url(), format=format, region=region, path_style=path_style,
                      verify_read_subset=verify_read_subset)
    repo.set_secrets(access_key_id=access_key_id or None, secret_access_key=secret_access_key or None,
                     password=password or None)
    with transaction.atomic():
        repo.save()
        if is_default:
            _set_default(repo)
        audit_record(action="repository_create", actor=user, request=request, actor_name=actor_name,
                     object_type="repository", object_name=repo.name,
                     params=_params(repo, password="generated" if generated else _params(repo)["password"]))
        if repo.is_restic:
            repository_init_start(repository=repo, user=user)
    return Saved(repo, generated)


def repository_update(*, repository: Repository, url: str, region: str = "", path_style: bool = True,
                      access_key_id: str = "", secret_access_key: str = "", password: str = "",
                      verify_read_subset: str = "", user=None, request=None) -> Repository:
    """Change a repository; an empty secret keeps the stored one. The built-in folder's
    location is BACKUP_ROOT (settings) and cannot be changed here."""
    repo = repository
    url, region = (url or "").strip(), (region or "").strip()
    if repo.builtin and url != repo.url:
        raise RepositoryInvalid("The built-in folder is BACKUP_ROOT (a setting); its location is not edited here.",
                                field="url")
    location = repository_validate(name=repo.name, url=url, format=repo.format, region=region,
                                   verify_read_subset=verify_read_subset, access_key_id=access_key_id,
                                   secret_access_key=secret_access_key, instance=repo)
    moved = location.url() != repo.url and not repo.builtin
    if moved and repo.backups.exists():
        raise RepositoryInvalid(f"{repo.name} holds backups: its location cannot change (add another "
                                "repository instead).", field="url")
    if password and not repo.is_restic:
        raise RepositoryInvalid("A password is for restic repositories only.", field="password")
    if location.kind == "s3" and not ((access_key_id or repo.access_key_id_enc)
                                      and (secret_access_key or repo.secret_access_key_enc)):
        raise RepositoryInvalid("An S3 location needs an access key id and its secret access key.",
                                field="access_key_id")
    changed = [f for f, new in (("url", location.url() if not repo.builtin else repo.url), ("region", region),
                                ("path_style", path_style), ("verify_read_subset", verify_read_subset))
               if getattr(repo, f) != new]
    if not repo.builtin:
        repo.url = location.url()
    repo.region, repo.path_style, repo.verify_read_subset = region, path_style, verify_read_subset
    if location.kind != "s3":
        repo.access_key_id_enc = repo.secret_access_key_enc = ""
    repo.set_secrets(access_key_id=access_key_id or None, secret_access_key=secret_access_key or None,
                     password=password or None)
    secrets_changed = [label for label, value in (("access key id", access_key_id),
                                                  ("secret access key", secret_access_key),
                                                  ("password", password)) if value]
    with transaction.atomic():
        repo.save()
        audit_record(action="repository_update", actor=user, request=request, object_type="repository",
                     object_name=repo.name, params=_params(repo, changed=changed, secrets_replaced=secrets_changed))
    return repo


def repository_in_use(repository: Repository) -> str:
    """Why the repository cannot be deleted ("" when it can)."""
    from policies.models import BackupPolicy

    reasons = []
    count = repository.backups.count()
    if count:
        reasons.append(f"{count} backup{'s' if count != 1 else ''}")
    names = sorted(set(BackupPolicy.objects.filter(repository=repository).values_list("name", flat=True)) |
                   set(BackupPolicy.objects.filter(copy_to=repository).values_list("name", flat=True)))
    if names:
        reasons.append(f"the polic{'ies' if len(names) != 1 else 'y'} {', '.join(names)}")
    return " and ".join(reasons)


def repository_delete(*, repository: Repository, user=None, request=None) -> None:
    """Forget a repository (its data stays where it is). Refused for the built-in folder
    and while backups or policies use it."""
    if repository.builtin:
        raise Refused("The built-in folder cannot be deleted (it is BACKUP_ROOT).")
    why = repository_in_use(repository)
    if why:
        raise Refused(f"{repository.name} is used by {why}: delete or move those first.")
    params = _params(repository)
    with transaction.atomic():
        repository.delete()
        if not Repository.objects.filter(is_default=True).exists():  # the built-in folder takes over
            Repository.objects.filter(builtin=True).update(is_default=True)
        audit_record(action="repository_delete", actor=user, request=request, object_type="repository",
                     object_name=params["name"], params=params)


def repository_make_default(*, repository: Repository, user=None, request=None) -> Repository:
    """Backups that name no repository go here from now on."""
    with transaction.atomic():
        _set_default(repository)
        audit_record(action="repository_default", actor=user, request=request, object_type="repository",
                     object_name=repository.name, params={"name": repository.name})
    return repository


def _job(kind: str, repository: Repository, *, user=None, **params) -> Job:
    return job_create(kind=kind, target=repository.name, target_type="repository",
                      params={"repository": repository.pk, **params}, user=user, progress_total=None)


def repository_check_start(*, repository: Repository, user=None, request=None) -> Job:
    """"Test connection": a worker lists the storage (archives) or asks restic (restic),
    and records what it found on the repository (status_text, checked_at)."""
    with transaction.atomic():
        job = _job(KIND_CHECK, repository, user=user)
        audit_record(action="repository_check", actor=user, request=request, object_type="repository",
                     object_name=repository.name, params={"job": job.pk})
    return job


def repository_init_start(*, repository: Repository, user=None) -> Job:
    """`restic init` of a new restic repository, by a worker."""
    return _job(KIND_INIT, repository, user=user)


def backup_copy_start(*, backup, repository: Repository, user=None, trigger: str = "schedule", policy=None):
    """Queue a copy of a stored archive into a second archive repository: a Backup row
    (copy_of = the original) and its job. Refused for restic on either side. `policy`:
    the policy whose copy it is (its job names it: the copy stays the policy's to prune
    after the original is gone)."""
    from backups.models import Backup

    if not backup.is_restorable or backup.repository_id == repository.pk:
        raise Refused(f"Backup #{backup.pk} has no archive to copy to {repository.name}.")
    source_restic = backup.repository_id is not None and backup.repository.is_restic
    if repository.is_restic or source_restic:
        raise Refused("Copies to or from restic repositories are not supported yet.")
    with transaction.atomic():
        job = job_create(kind=KIND_COPY, target=backup.volume_name,
                         params={"backup": backup.pk, "repository": repository.pk,
                                 **({"policy": policy.pk} if policy is not None else {})}, user=user, trigger=trigger,
                         progress_total=backup.size_bytes)
        copy = Backup.objects.create(
            job=job, volume=backup.volume, volume_name=backup.volume_name, origin=backup.origin,
            compression=backup.compression, stop_containers=backup.stop_containers,
            bytes_expected=backup.size_bytes, repository=repository, copy_of=backup,
        )
        audit_record(action="backup_copy_start", actor=user, object_type="backup", object_name=str(backup.pk),
                     params={"copy": copy.pk, "job": job.pk, "repository": repository.name})
    return copy


def repository_status_record(*, repository_id: int, text: str) -> None:
    Repository.objects.filter(pk=repository_id).update(status_text=text[:2000], checked_at=timezone.now())


def repository_for_job(job: Job) -> Repository:
    repo = Repository.objects.filter(pk=(job.params or {}).get("repository")).first()
    if repo is None:
        raise CargoholdError("That repository no longer exists.")
    return repo
