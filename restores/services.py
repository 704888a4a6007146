"""Restores, web side: what the pages and the CLI call to start, press and dismiss.

The `*_start` functions check what the database can tell, write a Restore row and its
job (run by a worker: restores.worker) and audit the request; every refusal is audited
and changes nothing. The permission helpers say what a role may choose. Nothing here
talks to the engine. Imports (they create backups) live in backups.imports, which uses
`refuse` and `role_refusal` from here.
"""

from __future__ import annotations

import re
from datetime import timezone as dt_timezone

from django.db import transaction
from django.utils import timezone

from accounts import roles
from accounts.services import actor_name, audit_record
from backups.models import Backup
from hosts import refs
from jobs.models import Job
from jobs.services import job_create
from project.db import save_fields
from project.errors import Refused
from project.redact import REDACTED
from restores.models import Restore
from volumes.forms import validate_volume_ref
from volumes.models import Volume

KIND_RESTORE_NEW = "restore"
KIND_RESTORE_IN_PLACE = "restore_in_place"
KIND_ROLLBACK = "restore_rollback"
KIND_REMOVE_PARTIAL = "restore_remove_partial"
ONLY_ADMINS = "Only an Admin (the permission to create volumes)"


def refuse(message: str, *, action: str, user, requested_by: str, object_name: str, params: dict) -> None:
    """Every refusal is audited, then raised."""
    audit_record(action=action, actor=user, actor_name=requested_by, object_type="volume", object_name=object_name,
                 params=params, result="error", error=message)
    raise Refused(message)


def role_refusal(user, perm: str, what: str, obj=None) -> str | None:
    """Why `user` may not do this (the views and the CLI check too; this covers any caller):
    on `obj` (their team's role on it, accounts.scoping), else as a global role."""
    from accounts import scoping

    if user is not None and not (scoping.can(user, perm, obj) if obj is not None
                                 else scoping.can_globally(user, perm)):
        return f"Your role does not allow {what}."
    return None


def backup_label(backup: Backup) -> str:
    when = backup.finished_at or backup.created_at
    stamp = when.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if when else ""
    return f"#{backup.pk} of {backup.volume_name} ({stamp})"


def manifest_volume(backup: Backup) -> dict:
    """The volume settings the backup's manifest records (for an import: what the
    archive's manifest claims, untrusted). A restore starts from `restore_defaults`."""
    vol = (backup.manifest or {}).get("volume") or {}
    options = vol.get("options") if isinstance(vol.get("options"), dict) else {}
    labels = vol.get("labels") if isinstance(vol.get("labels"), dict) else {}
    redacted = vol.get("options_redacted") if isinstance(vol.get("options_redacted"), list) else []
    return {
        "driver": str(vol.get("driver") or "local")[:255],
        "options": {str(k): str(v) for k, v in options.items()},
        "labels": {str(k): str(v) for k, v in labels.items()},
        "redacted": [str(k) for k in redacted],
    }


def may_choose_volume_settings(user) -> bool:
    """Driver options (bind mounts, NFS, CIFS, tmpfs...), a driver other than `local`, and
    device nodes reach outside a volume, into the host: the same permission as creating a
    volume. No user: the host's own CLI (whoever runs manage.py already holds the host)."""
    from accounts import scoping

    # A global Admin's (accounts.scoping): a team's Admin holds the team's volumes, not the host.
    return user is None or scoping.can_globally(user, roles.MANAGE_VOLUMES)


COMPOSE_LABEL_PREFIX = "com.docker.compose."


def restore_defaults(*, backup: Backup, user) -> dict:
    """What a restore into a new volume starts from: the manifest's labels, and its driver
    and options only where they may be kept: the user may choose them, and the manifest is
    Cargohold's own (an imported archive's manifest is untrusted: an Admin types them).
    `recorded` is the manifest's own settings, to say what was left out."""
    recorded = manifest_volume(backup)
    trusted = backup.origin != Backup.Origin.IMPORTED
    keep = trusted and may_choose_volume_settings(user)
    # Compose's own labels are left out unless asked for: a copy carrying them would join
    # the project (Compose would adopt it, and it would count as the project's, reclaimable).
    compose = {k: v for k, v in recorded["labels"].items() if k.startswith(COMPOSE_LABEL_PREFIX)}
    return {
        **recorded,
        "labels": {k: v for k, v in recorded["labels"].items() if k not in compose},
        "compose_labels": compose,
        "driver": recorded["driver"] if keep else "local",
        "options": recorded["options"] if keep else {},
        "redacted": recorded["redacted"] if keep else [],
        "recorded": recorded,
        "left_out": not keep and (recorded["driver"] != "local" or bool(recorded["options"])),
        "may_choose": may_choose_volume_settings(user),
        "imported": not trusted,
    }


def _volume_settings_refusal(*, driver: str | None, options: dict | None, allow_devices: bool, user) -> str | None:
    """Why the settings asked for reach further than `user` may, or None."""
    if may_choose_volume_settings(user):
        return None
    if allow_devices:
        return (f"{ONLY_ADMINS} may allow device nodes (a device node gives access to the host's hardware): "
                "nothing was restored.")
    if (driver or "local").strip() != "local" or options:
        return (f"{ONLY_ADMINS} may choose a volume driver or driver options (bind mounts, NFS, CIFS, tmpfs... "
                "reach outside the volume): nothing was restored. Leave them out to restore into a plain local "
                "volume.")
    return None


def suggested_name(backup: Backup) -> str:
    when = (backup.finished_at or backup.created_at or timezone.now()).astimezone(dt_timezone.utc)
    base = re.sub(r"[^a-zA-Z0-9_.-]", "-", refs.split_ref(backup.volume_name or "")[1] or "restored")[:200] or "restored"
    if not base[0].isalnum():
        base = "r" + base
    return f"{base}-restored-{when:%Y%m%d-%H%M%S}"


def check_restorable(backup: Backup) -> None:
    """Refused unless `backup` ended well, is in storage and has a checksum (the web side
    asks before queueing, the worker again before reading)."""
    if backup.is_active:
        raise Refused(f"Backup #{backup.pk} is still {backup.status}: there is nothing to restore yet.")
    if not backup.is_restorable:
        why = "its archive is missing from storage" if backup.missing else f"it {backup.status}"
        raise Refused(f"Backup #{backup.pk} cannot be restored: {why}.")
    if not backup.sha256 and not backup.snapshot_id:  # restic checks its own data (restic check)
        raise Refused(f"Backup #{backup.pk} has no recorded checksum; verify it first.")


# --- only some paths ------------------------------------------------------------------------

MAX_PATHS = 1000


def clean_restore_paths(backup: Backup, paths) -> list[str]:
    """The paths of a restore of some files and folders only, checked against the backup's
    file index: each relative (no leading "/", no "." or ".." component, no control
    characters), present in the index, at most MAX_PATHS, duplicates dropped. Raises
    Refused with a message naming the first problem; [] means the whole backup."""
    from backups.file_index import index_entry, index_has_entries
    from backups.files_selectors import BadPath, clean_path

    paths = list(paths or [])
    if not paths:
        return []
    if len(paths) > MAX_PATHS:
        raise Refused(f"Choose at most {MAX_PATHS} files and folders to restore (or restore the whole backup); "
                      "nothing was restored.")
    cleaned: list[str] = []
    for raw in paths:
        if not isinstance(raw, str) or not raw.strip():
            raise Refused("An empty path was given; nothing was restored.")
        if raw.startswith("/"):
            raise Refused(f"{raw[:200]!r} is an absolute path: paths are relative to the volume's root "
                          "(app/config.yml); nothing was restored.")
        try:
            path = clean_path(raw)  # the file browser's rules: no "." / "..", no control characters, bounded
        except BadPath as exc:
            raise Refused(f"{raw[:200]!r}: {exc} Nothing was restored.") from None
        if not path:
            raise Refused("The volume's root is the whole backup: restore it without choosing paths.")
        cleaned.append(path)
    cleaned = list(dict.fromkeys(cleaned))
    if not index_has_entries(backup):
        raise Refused(f"Backup #{backup.pk} has no file index (it was made before Cargohold kept one, or found "
                      "without it): restore it whole; nothing was restored.")
    missing = [p for p in cleaned if index_entry(backup, p) is None]
    if missing:
        shown = ", ".join(repr(p[:200]) for p in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                                                 else "")
        raise Refused(f"Backup #{backup.pk} does not hold {shown}; nothing was restored.")
    return cleaned


# --- starting a restore -------------------------------------------------------------------


def _create_restore(*, backup: Backup, mode: str, volume_name: str, kind: str, user, trigger: str,
                    requested_by: str, queue: str | None, audit_extra: dict | None = None, **fields) -> Restore:
    with transaction.atomic():
        job = job_create(
            kind=kind, target=volume_name,
            params={"backup": backup.pk, "requested_by": actor_name(user, requested_by)},
            user=user, trigger=trigger, progress_total=backup.size_bytes, queue=queue,
        )
        restore = Restore.objects.create(
            job=job, backup=backup, backup_label=backup_label(backup), mode=mode, volume_name=volume_name, **fields,
        )
        audit_record(
            action="restore_start", actor=user, actor_name=requested_by, object_type="volume",
            object_name=volume_name,
            params={"restore": restore.pk, "job": job.pk, "backup": backup.pk, "mode": mode,
                    "source_volume": backup.volume_name, "trigger": trigger,
                    **({"driver": restore.driver, "options": restore.options, "labels": restore.labels}
                       if mode == Restore.Mode.NEW else {}),
                    "allow_devices": restore.allow_devices, "origin": backup.origin,
                    **({"paths": restore.paths[:20], "path_count": len(restore.paths)} if restore.paths else {}),
                    **(audit_extra or {})},
        )
    return restore


def _host_known(name: str) -> bool:
    from hosts.models import Host

    return name == refs.default_host_name() or Host.objects.filter(name=name).exists()


def restore_new_start(
    *, backup: Backup, volume_name: str, driver: str | None = None, options: dict | None = None,
    labels: dict | None = None, allow_devices: bool = False, user=None, trigger: str = "user",
    requested_by: str = "", queue: str | None = None, paths: list[str] | None = None,
) -> Restore:
    """Queue a restore of `backup` into a new volume `volume_name` (only `paths`, files
    and folders of its file index, when given: `clean_restore_paths`).

    `volume_name` is the new volume's reference (hosts.refs): `host:name` makes it on
    another host, whose worker runs the job (the job's host is the target's): a copy of a
    volume to another host through the backup's repository, which that worker must reach.

    Driver, options and labels default to `restore_defaults` (the form shows them for
    editing; Compose's labels are left out): the manifest's, except that a user who may not create volumes gets the plain
    `local` driver without options, and an import's manifest never supplies driver or
    options. Choosing a driver, options or device nodes without that permission is
    refused. Refused, audited and nothing queued also when the name is invalid or taken
    (in the mirror, or by another queued restore), the backup cannot be restored, or a
    driver option still holds the manifest's redaction mark. The worker checks the engine
    again.
    """
    refusal = {"action": "restore_start", "user": user, "requested_by": requested_by, "object_name": volume_name,
               "params": {"backup": backup.pk, "mode": "new", "trigger": trigger}}
    if problem := (role_refusal(user, roles.RESTORE_NEW, "restoring into a new volume", backup)
                   or _volume_settings_refusal(driver=driver, options=options, allow_devices=allow_devices,
                                               user=user)):
        refuse(problem, **refusal)
    defaults = restore_defaults(backup=backup, user=user)
    driver = (driver if driver is not None else defaults["driver"]).strip() or "local"
    options = dict(defaults["options"] if options is None else options)
    labels = dict(defaults["labels"] if labels is None else labels)
    try:
        check_restorable(backup)
    except Refused as exc:
        refuse(str(exc), **refusal)
    if problem := validate_volume_ref(volume_name):
        refuse(problem, **refusal)
    if not _host_known(refs.host_of(volume_name)):
        refuse(f"There is no host named {refs.host_of(volume_name)}: register it on the Hosts page first.", **refusal)
    if Volume.objects.present().filter(name=volume_name).exists():
        refuse(f"A volume named {volume_name} already exists: choose another name, or restore in place.", **refusal)
    if Restore.objects.active().filter(volume_name=volume_name).exists():
        refuse(f"Another restore into {volume_name} is already queued or running.", **refusal)
    redacted = [k for k, v in options.items() if v == REDACTED or (REDACTED in v and "=" in v)]
    if redacted:
        refuse(
            f"The driver option{'s' if len(redacted) > 1 else ''} {', '.join(redacted)} "
            f"{'were' if len(redacted) > 1 else 'was'} not stored in the backup (secrets are not written "
            "beside archives): type the real value before restoring.", **refusal,
        )
    try:
        paths = clean_restore_paths(backup, paths)
    except Refused as exc:
        refuse(str(exc), **refusal)
    return _create_restore(
        backup=backup, mode=Restore.Mode.NEW, volume_name=volume_name, kind=KIND_RESTORE_NEW,
        user=user, trigger=trigger, requested_by=requested_by, queue=queue,
        driver=driver, options=options, labels=labels, allow_devices=allow_devices, paths=paths,
    )


def restore_in_place_start(
    *, backup: Backup, confirm_name: str, allow_devices: bool = False, confirm_imported: bool = False, user=None,
    trigger: str = "user", requested_by: str = "", queue: str | None = None, paths: list[str] | None = None,
) -> Restore:
    """Queue a restore of `backup` over the content of its own volume (Admins).

    `confirm_name` must be the volume's name, typed. An imported backup was not made from
    this volume by Cargohold, whatever name it is recorded under: it also needs
    `confirm_imported`. Device nodes need the permission to create volumes. The worker
    stops the containers that use the volume, takes a safety backup, empties the volume,
    writes the archive, and starts the containers again; if the write fails it puts the
    safety backup back. With `paths` only those files and folders are replaced (removed,
    then written from the backup); the rest of the volume is left as it is.
    """
    name = backup.volume_name
    refusal = {"action": "restore_start", "user": user, "requested_by": requested_by, "object_name": name,
               "params": {"backup": backup.pk, "mode": "in_place", "trigger": trigger}}
    if problem := (role_refusal(user, roles.RESTORE_IN_PLACE, "restoring in place", backup)
                   or _volume_settings_refusal(driver=None, options=None, allow_devices=allow_devices, user=user)):
        refuse(problem, **refusal)
    try:
        check_restorable(backup)
    except Refused as exc:
        refuse(str(exc), **refusal)
    if confirm_name != name:
        refuse("The name you typed does not match the volume's name; nothing was restored.", **refusal)
    if backup.origin == Backup.Origin.IMPORTED and not confirm_imported:
        refuse(
            f"Backup #{backup.pk} was imported (an archive uploaded or found in storage), not made from this volume "
            f"by Cargohold, though it is recorded under the name {name}. Confirm that you mean to replace the "
            "volume's content with it (on the page: the checkbox; on the command line: --confirm-imported); "
            "nothing was restored.", **refusal,
        )
    if not Volume.objects.present().filter(name=name).exists():
        refuse(f"The volume {name} is not on the engine (any more): restore into a new volume instead.", **refusal)
    if Restore.objects.active().filter(volume_name=name).exists():
        refuse(f"Another restore of {name} is already queued or running.", **refusal)
    unfinished = Restore.objects.filter(volume_name=name, rollback_pending=True).first()
    if unfinished is not None:
        refuse(
            f"Restore #{unfinished.pk} has not yet put the previous content of {name} back (its page says why): "
            "wait for the recovery, press its button, or dismiss it first.", **refusal,
        )
    try:
        paths = clean_restore_paths(backup, paths)
    except Refused as exc:
        refuse(str(exc), **refusal)
    return _create_restore(
        backup=backup, mode=Restore.Mode.IN_PLACE, volume_name=name, kind=KIND_RESTORE_IN_PLACE,
        user=user, trigger=trigger, requested_by=requested_by, queue=queue, allow_devices=allow_devices, paths=paths,
        audit_extra={"confirm_imported": bool(confirm_imported)} if backup.origin == Backup.Origin.IMPORTED else {},
    )


# --- buttons: put the previous content back, remove a partial volume, dismiss ---------------


def _button_start(*, restore: Restore, kind: str, action: str, user, trigger: str, queue: str | None) -> Job:
    with transaction.atomic():
        job = job_create(kind=kind, target=restore.volume_name, params={"restore": restore.pk}, user=user,
                         trigger=trigger, queue=queue)
        audit_record(action=action, actor=user, object_type="volume", object_name=restore.volume_name,
                     params={"restore": restore.pk, "job": job.pk})
    return job


def restore_rollback_start(*, restore: Restore, user=None, trigger: str = "user", queue: str | None = None) -> Job:
    """Queue putting the safety backup back (what the recovery does, on request)."""
    if not restore.rollback_pending or restore.is_active:
        raise Refused("There is nothing to put back for this restore.")
    return _button_start(restore=restore, kind=KIND_ROLLBACK, action="restore_rollback_start", user=user,
                         trigger=trigger, queue=queue)


def partial_volume_remove_start(*, restore: Restore, user=None, trigger: str = "user", queue: str | None = None) -> Job:
    """Queue removing the half-filled volume a failed restore left."""
    if not restore.partial or restore.is_active:
        raise Refused("This restore left no partial volume to remove.")
    return _button_start(restore=restore, kind=KIND_REMOVE_PARTIAL, action="restore_remove_partial_start",
                         user=user, trigger=trigger, queue=queue)


def restore_dismiss(*, restore: Restore, user=None, request=None) -> None:
    """An Admin accepts the volume as it is (no safety backup to put back, say): the
    pending put-back is dropped, and the recovery then starts the containers again."""
    if not restore.rollback_pending or restore.is_active:
        raise Refused("There is nothing pending to dismiss for this restore.")
    who = actor_name(user, "")
    save_fields(restore, rollback_pending=False,
                rollback_error=f"{restore.rollback_error} Dismissed by {who}.".strip(),
                outcome=f"{restore.outcome} {who} dismissed putting the previous content back; the volume stays "
                        "as it is.".strip())
    audit_record(action="restore_dismiss", actor=user, request=request, object_type="volume",
                 object_name=restore.volume_name, params={"restore": restore.pk})
