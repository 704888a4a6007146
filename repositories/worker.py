"""Repositories, worker side: test a repository's connection, `restic init` a new one,
copy a policy's backup into its second repository.

Registered in RepositoriesConfig.ready() (jobs.kinds). Storage that needs credentials
is only ever contacted here, in a worker: the web process holds no long network calls.
What a check finds goes on the repository (status_text, checked_at), scrubbed and
without secrets.
"""

from __future__ import annotations

import logging
from itertools import islice

from django.utils import timezone

import tarstream
from accounts.services import audit_record
from backups.models import Backup
from backups.storage import StorageError, backup_storage, manifest_key, storage_for
from jobs.locks import backup_lock
from jobs.models import Job
from jobs.runner import JobContext
from project.db import save_fields
from project.errors import CargoholdError, Refused
from project.redact import scrubbed_text as scrub
from project.sizes import human_size
from repositories.services import repository_for_job, repository_status_record

logger = logging.getLogger(__name__)


def _restic():
    from repositories import restic

    return restic


# --- test connection ---------------------------------------------------------------------


def repository_check_perform(ctx: JobContext) -> dict:
    """List the storage (archives: a few keys) or ask restic (`restic_check_access`,
    when the restic adapter has it); record what was found on the repository."""
    repo = repository_for_job(ctx.job)
    ctx.say(f"Contacting {repo.name}")
    if repo.is_restic:
        restic = _restic()
        if not hasattr(restic, "restic_check_access"):
            text = "Not checked: this Cargohold cannot talk to restic repositories yet."
        else:
            text = f"reachable: {restic.restic_check_access(repo)}"
    else:
        storage = storage_for(repo)
        keys = list(islice(storage.list_keys(), 1001))
        archives = sum(1 for k in keys if k.endswith(".manifest.json"))
        more = "+" if len(keys) > 1000 else ""
        text = f"reachable: listed {len(keys)}{more} objects ({archives}{more} manifests)"
    text = scrub(text)
    repository_status_record(repository_id=repo.pk, text=text)
    return {"message": f"{repo.name}: {text}"}


def repository_check_on_end(job: Job) -> None:
    """A failed check leaves its reason on the repository too (the job's error is scrubbed)."""
    if job.status == Job.Status.SUCCEEDED:
        return
    repo_id = (job.params or {}).get("repository")
    if repo_id:
        repository_status_record(repository_id=repo_id, text=f"{job.status}: {job.error or 'no reason given'}")


# --- restic init -------------------------------------------------------------------------


def repository_init_perform(ctx: JobContext) -> dict:
    """`restic init` (the restic adapter's `restic_init`) of a repository just created."""
    repo = repository_for_job(ctx.job)
    restic = _restic()
    if not hasattr(restic, "restic_init"):
        text = "Not initialised: this Cargohold cannot talk to restic repositories yet."
        repository_status_record(repository_id=repo.pk, text=text)
        return {"message": text}
    ctx.say(f"Initialising the restic repository {repo.name}")
    outcome = restic.restic_init(repo)
    text = scrub(outcome if isinstance(outcome, str) and outcome else "initialised")
    repository_status_record(repository_id=repo.pk, text=text)
    return {"message": f"{repo.name}: {text}"}


# --- a policy's copy into its second repository ----------------------------------------


def _copy_object(ctx: JobContext, source, target, key: str, *, to: str, token: str) -> tuple[str, int]:
    """Stream one object from `source` (`key`) to `target` (`to`), atomically (the
    target's temporary writer; never over an existing object); returns (sha256, bytes)
    of what was sent."""
    if target.exists(to):
        raise StorageError(f"{target.location(to)} exists already; refusing to overwrite it.")
    with source.open_reader(key) as raw, target.open_temp_writer(to, token=token) as writer:
        reader = tarstream.HashingReader(raw, on_read=ctx.advance_checked, sink=writer)
        reader.drain()
        writer.commit()
    return reader.hexdigest(), reader.bytes_read


def _free_key(target, original) -> str:
    """The original's key if the target has nothing under it, else the same name with
    -2, -3... (another backup of the same second may hold it there)."""
    key = original.key
    ext = tarstream.EXTENSIONS.get(original.compression, "")
    base = key[: -len(ext)] if ext and key.endswith(ext) else key
    n = 2
    while target.exists(key) or target.exists(manifest_key(key)):
        key = f"{base}-{n}{ext}"
        n += 1
    return key


def backup_copy_perform(ctx: JobContext) -> dict:
    """Copy a stored archive, its dumps, its file index and its manifest into the copy's
    repository.

    Holds the original's lock (nothing deletes it meanwhile), streams each object with
    bounded memory, checks the bytes sent have the recorded SHA-256, then re-reads what
    was written in the target and hashes it again: the copy is only `verified` when the
    target holds exactly those bytes. The manifest goes last (the same document, its keys
    those of the copy when the target had the original's name taken): a rescan of the
    second repository finds the copy, and the same uid there marks it as a copy."""
    from backups import file_index

    copy = Backup.objects.select_related("copy_of", "repository").get(job=ctx.job)
    original = copy.copy_of
    if original is None or not original.is_restorable:
        raise Refused("The original backup no longer has an archive; nothing was copied.")
    with ctx.lock(backup_lock(original.pk), wait_seconds=300):
        source, target = backup_storage(original), backup_storage(copy)
        key = _free_key(target, original)
        # Recorded before anything is written: a failure's on_end removes exactly these.
        save_fields(copy, started_at=timezone.now(), key=key, location=target.location(key), storage=target.name)

        def moved(k: str) -> str:  # a key beside the original's -> the same beside the copy's
            return key + k[len(original.key):]

        ctx.set_progress(0, original.size_bytes, f"Copying backup #{original.pk} to {copy.repository.name}")
        sha, size = _copy_object(ctx, source, target, original.key, to=key, token=copy.uid.hex)
        if original.sha256 and sha != original.sha256:
            raise tarstream.ArchiveError(f"The original archive read back with SHA-256 {sha}, not the recorded "
                                         f"{original.sha256}: it was not copied (verify the original).")
        manifest = source.read_json(manifest_key(original.key))
        for entry in manifest.get("dumps") or []:
            dump = entry.get("key") if isinstance(entry, dict) else None
            if isinstance(dump, str) and dump.startswith(original.key + "."):
                ctx.say(f"Copying the dump {dump.rsplit('/', 1)[-1]}")
                _copy_object(ctx, source, target, dump, to=moved(dump), token=copy.uid.hex)
                entry["key"], entry["file"] = moved(dump), moved(dump).rsplit("/", 1)[-1]
        index = file_index.index_key(original.key)
        if source.exists(index):  # the file index: the copy is browsable too
            _copy_object(ctx, source, target, index, to=file_index.index_key(key), token=copy.uid.hex)
        ctx.set_progress(0, size, f"Verifying the copy in {copy.repository.name}")
        written = target.sha256(key)
        if written != sha:
            raise tarstream.ArchiveError(f"The copy in {copy.repository.name} reads back with SHA-256 {written}, "
                                         f"not {sha}: the copy is not kept.")
        ctx.done = size
        if key != original.key and isinstance(manifest.get("archive"), dict):
            manifest["archive"].update(key=key, file=key.rsplit("/", 1)[-1])
        target.write_json(manifest_key(key), manifest, token=copy.uid.hex)
        if target.exists(file_index.index_key(key)):
            file_index.index_import(copy, target)
        now = timezone.now()
        save_fields(copy, manifest=manifest, sha256=sha, size_bytes=size, bytes_read=original.bytes_read,
                    data_bytes=original.data_bytes, file_count=original.file_count, verified=True,
                    verified_at=now, verify_error="")
    return {"backup": copy.pk, "message": (f"Copied backup #{original.pk} ({human_size(size)}) to "
                                           f"{copy.repository.name} as #{copy.pk}; SHA-256 read back as recorded.")}


def backup_copy_on_end(job: Job) -> None:
    """A failed copy leaves nothing in the target (archive, dumps, manifest); audited."""
    from backups.dumps import dumps_remove
    from backups.worker import backup_ended_cleanup

    copy = Backup.objects.filter(job=job).first()
    if copy is not None and job.status != Job.Status.SUCCEEDED and copy.key:
        dumps_remove(copy)
    copy = backup_ended_cleanup(job)
    if copy is None:
        return
    ok = job.status == Job.Status.SUCCEEDED
    audit_record(action="backup_copy_finish", actor=job.created_by, object_type="backup",
                 object_name=str(copy.copy_of_id or ""),
                 params={"copy": copy.pk, "status": job.status, "sha256": copy.sha256,
                         "repository": copy.repository.name if copy.repository_id else "local",
                         "location": copy.location},
                 result="ok" if ok else "error", error="" if ok else job.error)


def copy_after_run(run) -> None:
    """A policy run succeeded: queue the copy of its backup into the policy's `copy_to`
    (once per run: the caller calls it when the run first becomes succeeded)."""
    from repositories.services import backup_copy_start

    policy = run.policy
    backup = run.backup
    if policy.copy_to_id is None or backup is None:
        return
    try:
        backup_copy_start(backup=backup, repository=policy.copy_to, policy=policy)
    except CargoholdError as exc:
        logger.warning("policy %s: no copy of backup %s to %s: %s", policy.name, backup.pk, policy.copy_to.name, exc)
        audit_record(action="backup_copy_start", actor_name=f"policy:{policy.name}"[:150], object_type="backup",
                     object_name=str(backup.pk), params={"repository": policy.copy_to.name},
                     result="error", error=str(exc))
