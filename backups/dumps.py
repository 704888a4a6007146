"""Dumps of known images (backups.recipes), worker side: taken with a backup for the
volumes that opted in, stored next to the archive, named in the manifest; loaded back
into the database's container by the "Load this dump" button (its own job).
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings

from backups.models import Backup
from backups.recipes import RecipeError, dump_key, explain_failure, recipe_named
from backups.storage import StorageError, backup_storage, manifest_key
from jobs.locks import backup_lock, volume_lock
from jobs.models import Job
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import Refused
from volumes import engine

logger = logging.getLogger(__name__)

KIND_DUMP_LOAD = "dump_load"


def _running(volume_name: str) -> dict[str, engine.EngineContainer]:
    return {c.name: c for c in engine.containers_using(volume_name, running_only=True)
            if engine.HELPER_LABEL not in c.labels}


def dump_take(ctx: JobContext, backup: Backup, container: engine.EngineContainer, recipe_id: str) -> dict:
    """One dump through exec into storage next to the archive; returns its manifest entry."""
    recipe = recipe_named(recipe_id, image=container.image, labels=container.labels)
    storage = backup_storage(backup)
    key = dump_key(backup.key, recipe, container.name)
    digest, size = hashlib.sha256(), 0
    ctx.say(f"Dumping {recipe.label} in {container.name}")
    ctx.log(f"$ {recipe.label} in {container.name} -> {key.rsplit('/', 1)[-1]}")
    with storage.open_temp_writer(key, token=backup.uid.hex) as writer:
        def sink(data: bytes) -> None:
            nonlocal size
            writer.write(data)
            digest.update(data)
            size += len(data)
            ctx.advance(len(data))

        result = engine.exec_run(container.id, list(recipe.dump), user=recipe.user, on_line=lambda l: ctx.log(f"  {l}"),
                                 stdout_sink=sink, timeout=settings.DUMP_TIMEOUT_SECONDS)
        if not result.ok:
            writer.abort()
            why = f"killed after {settings.DUMP_TIMEOUT_SECONDS} s" if result.timed_out else \
                explain_failure(recipe, result.exit_code, result.output)
            raise RecipeError(f"The dump of {container.name} failed: {why}")
        writer.commit()
    ctx.log(f"  {size} bytes, sha256 {digest.hexdigest()}")
    return {"recipe": recipe_id, "label": recipe.label, "container": container.name, "image": container.image,
            "key": key, "file": key.rsplit("/", 1)[-1], "bytes": size, "sha256": digest.hexdigest(),
            "loadable": recipe.load is not None}


def dumps_take(ctx: JobContext, backup: Backup) -> list[dict]:
    """Every dump the volume opted into, after its archive is stored; the manifest (in
    storage and on the row) then names them. A failure removes the dumps taken and fails
    the backup (its on_end removes the archive)."""
    from drills.models import DumpChoice

    choices = list(DumpChoice.objects.filter(volume_name=backup.volume_name))
    if not choices:
        return []
    running = _running(backup.volume_name)
    entries = []
    try:
        for choice in choices:
            container = running.get(choice.container_name)
            if container is None:
                raise RecipeError(f"The container {choice.container_name} is not running: its {choice.recipe} "
                                  "dump cannot be taken (exec needs a running container).")
            entries.append(dump_take(ctx, backup, container, choice.recipe))
        manifest = {**backup.manifest, "dumps": entries}
        # Storage never overwrites: the manifest goes and comes back naming the dumps. The
        # job still runs, so a crash in between fails it and its on_end removes the rest.
        storage = backup_storage(backup)
        storage.delete(manifest_key(backup.key))
        storage.write_json(manifest_key(backup.key), manifest, token=backup.uid.hex)
        save_fields(backup, manifest=manifest)
    except BaseException:
        dumps_remove(backup)
        raise
    ctx.result["dumps"] = len(entries)
    return entries


def dumps_remove(backup: Backup) -> None:
    """Remove the dump objects stored next to a backup's archive (a failed one's)."""
    if not backup.key:
        return
    try:
        storage = backup_storage(backup)
        keys = [k for k in storage.list_keys(backup.key.rsplit("/", 1)[0] + "/")
                if k.startswith(backup.key + ".") and k != manifest_key(backup.key)]
        for key in keys:
            storage.delete(key)
    except StorageError:
        logger.exception("could not remove the dumps of backup %s", backup.pk)


def dumps_on_backup_ended(sender=None, *, job, **kwargs) -> None:
    """job_ended of a backup: a failed one keeps no dump (a dead worker's included)."""
    from backups.services import KIND_BACKUP

    if job.kind != KIND_BACKUP or job.status == Job.Status.SUCCEEDED:
        return
    backup = Backup.objects.filter(job=job).first()
    if backup is not None:
        dumps_remove(backup)


def dumps_on_backup_deleted(sender=None, *, instance: Backup, **kwargs) -> None:
    """post_delete of a Backup (its deletion, retention): its dumps go with its archive."""
    for entry in (instance.manifest or {}).get("dumps") or []:
        try:
            backup_storage(instance).delete(entry["key"])
        except (StorageError, KeyError):
            logger.warning("could not remove dump %s of deleted backup %s", entry.get("key"), instance.pk)


def dump_load_perform(ctx: JobContext) -> dict:
    """Load a backup's dump back through exec into the (running) container it came from."""
    backup = Backup.objects.filter(pk=ctx.job.params.get("backup")).first()
    entry = next((d for d in (backup.manifest.get("dumps") or []) if d.get("key") == ctx.job.params.get("key")),
                 None) if backup else None
    if entry is None:
        raise Refused("That dump is no longer part of the backup; nothing was loaded.")
    with ctx.lock(volume_lock(backup.volume_name), wait_seconds=60), ctx.lock(backup_lock(backup.pk), wait_seconds=60):
        container = _running(backup.volume_name).get(entry["container"])
        if container is None:
            raise Refused(f"The container {entry['container']} is not running; start it, then load the dump.")
        recipe = recipe_named(entry["recipe"], image=container.image, labels=container.labels)
        if recipe.load is None:
            raise Refused(recipe.why_not_load)
        storage = backup_storage(backup)
        ctx.set_progress(0, entry.get("bytes"), f"Loading the dump into {container.name}")
        ctx.log(f"$ loading {entry['file']} into {container.name} ({recipe.label})")

        digest = storage.sha256(entry["key"])  # checked whole before anything reaches the database
        if digest != entry["sha256"]:
            raise Refused(f"The dump {entry['file']} is not the one taken (SHA-256 {digest}, "
                          f"{entry['sha256']} recorded); nothing was loaded.")

        def chunks():
            with storage.open_reader(entry["key"]) as f:
                while chunk := f.read(1 << 20):
                    ctx.advance(len(chunk))
                    yield chunk

        result = engine.exec_run(container.id, list(recipe.load), user=recipe.user, stdin=chunks(),
                                 on_line=lambda l: ctx.log(f"  {l}"), timeout=settings.DUMP_TIMEOUT_SECONDS)
    if not result.ok:
        raise RecipeError(f"Loading the dump into {container.name} failed: "
                          f"{explain_failure(recipe, result.exit_code, result.output)}")
    return {"message": f"Loaded {entry['file']} into {container.name}."}
