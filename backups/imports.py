"""Imports: an archive file (uploaded, or a path given to the CLI) becomes a backup of
origin "imported".

Web side: `import_start` checks what it can at once (role, name, size, format from the
content), writes the Backup row and its job. Worker side: `import_perform` checks every
member as a restore would (restores.archive_io), stores the archive, re-reads it and
writes its manifest; `import_on_end` audits the end and removes what a failed import
left. The web process only writes uploads into UPLOAD_DIR (restores.uploads); workers
write storage.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import tarstream
from accounts import roles
from accounts.services import actor_name, audit_record
from backups.models import Backup
from backups.storage import backup_storage, manifest_key
from backups.worker import archive_key, backup_ended_cleanup, build_manifest
from jobs.models import Job
from jobs.runner import JobContext
from jobs.services import job_create
from project.db import save_fields
from project.errors import Refused
from restores.archive_io import check_archive, import_expansion_limit
from restores.services import refuse, role_refusal
from tarstream import ArchiveError, HashingReader, Layout, TarScanner, detect_format, tar_chunks
from volumes import engine
from volumes.forms import validate_volume_name
from volumes.models import Volume

KIND_IMPORT = "backup_import"
_STAGED_NAME = re.compile(r"^upload-[0-9a-f]{32}\.staged$")


def upload_dir() -> Path:
    path = Path(settings.UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def staged_path(name: str) -> Path:
    if not isinstance(name, str) or not _STAGED_NAME.match(name):
        raise Refused("Invalid staged upload name.")
    return upload_dir() / name


def import_volume_name(original_name: str) -> str:
    """A volume name from an uploaded file's name (backup.tar.gz -> backup)."""
    base = Path(original_name or "").name
    for ext in (".tar.zst", ".tar.zstd", ".tar.gz", ".tgz", ".tzst", ".tar", ".zst", ".gz"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", base).strip("-._")[:200]
    if len(base) < 2 or not base[0].isalnum():
        base = f"imported-{base}" if base else "imported"
    return base


def import_start(*, source: Path, volume_name: str, original_name: str = "", user=None, trigger: str = "user",
                 requested_by: str = "", staged: bool = True, queue: str | None = None,
                 max_expanded_bytes: int | None = None) -> Backup:
    """Queue the import of an archive file as a backup of origin "imported".

    `staged=True`: `source` is an upload in UPLOAD_DIR that the worker imports and then
    deletes. `staged=False` (the CLI): the job is not enqueued; the caller performs it
    itself (jobs.runner.job_perform), reading `source` where it is. The format is checked
    from the content at once.

    The archive is untrusted whatever it holds: its backup is recorded as imported (shown
    so everywhere, and a restore in place of it asks for a confirmation), and a restore of
    it never takes a driver or driver options from a manifest (restores' `restore_defaults`).
    """
    refusal = {"action": "backup_import", "user": user, "requested_by": requested_by, "object_name": volume_name,
               "params": {"file": original_name or source.name, "trigger": trigger}}
    if problem := (role_refusal(user, roles.DOWNLOAD_ARCHIVE, "importing archives")
                   or validate_volume_name(volume_name)):
        refuse(problem, **refusal)
    # Raising the decompression-bomb limit lets an archive fill the engine's disk: Admins only.
    if max_expanded_bytes and (problem := role_refusal(user, roles.MANAGE_VOLUMES,
                                                       "raising the expansion limit of an import")):
        refuse(problem, **refusal)
    try:
        with open(source, "rb") as f:
            head = f.read(4096)
            size = f.seek(0, 2)
        fmt = detect_format(head)
    except ArchiveError as exc:
        refuse(str(exc), **refusal)
    except OSError as exc:
        refuse(f"Cannot read {source}: {exc.strerror or exc}.", **refusal)
    limit = settings.UPLOAD_MAX_BYTES
    if limit and size > limit:
        refuse(f"The archive is {size} bytes; at most {limit} bytes are accepted (UPLOAD_MAX_BYTES).", **refusal)
    params = {"original_name": (original_name or source.name)[:255], "format": fmt, "size": size,
              "requested_by": actor_name(user, requested_by)}
    if max_expanded_bytes:
        params["max_expanded_bytes"] = int(max_expanded_bytes)
    if staged:
        params["staged"] = staged_path(source.name).name
    else:
        params["source"] = str(Path(source).resolve())
    with transaction.atomic():
        job = job_create(kind=KIND_IMPORT, target=volume_name, target_type="backup", params=params, user=user,
                         trigger=trigger, progress_total=size, queue=queue, enqueue=staged)
        backup = Backup.objects.create(
            job=job, volume=Volume.objects.filter(name=volume_name).first(), volume_name=volume_name,
            origin=Backup.Origin.IMPORTED, compression="gzip" if fmt == "gzip" else "zstd",
        )
        audit_record(action="backup_import_start", actor=user, actor_name=requested_by, object_type="backup",
                     object_name=str(backup.pk),
                     params={"volume": volume_name, "file": params["original_name"], "format": fmt, "size": size,
                             "job": job.pk, "trigger": trigger})
    return backup


def _import_source(job: Job) -> Path:
    if job.params.get("staged"):
        return staged_path(job.params["staged"])
    if job.trigger == "cli" and job.params.get("source"):
        return Path(job.params["source"])
    raise Refused("The import has no file to read.")


def import_perform(ctx: JobContext) -> dict:
    """Perform an import job: validate the archive, store it (gzip/zstd as uploaded, plain
    tar compressed with zstd), checksum, re-read to verify, write its manifest.

    Every member is checked like a restore checks it, so a refused archive never becomes
    a backup. On failure the stored archive is removed and the staged upload deleted by
    `import_on_end`, whatever ended the job.
    """
    backup = Backup.objects.get(job=ctx.job)
    save_fields(backup, started_at=timezone.now())
    storage = backup_storage(backup)
    source = _import_source(ctx.job)
    fmt = ctx.job.params.get("format")
    with open(source, "rb") as f:
        if detect_format(f.read(4096)) != fmt:
            raise ArchiveError("The file changed since it was uploaded.")
        f.seek(0)
        key = archive_key(backup.volume_name, backup.started_at, backup.compression, storage)
        save_fields(backup, key=key, location=storage.location(key), storage=storage.name)
        ctx.set_progress(0, ctx.job.params.get("size"), "Checking and storing the archive")
        result, sha, stored_bytes, upload_sha = _store_import(ctx, f, fmt, key, backup, storage)
    ctx.set_progress(0, stored_bytes, "Verifying the stored archive")
    check_archive(key=key, compression=backup.compression, sha256=sha, allow_devices=True,
                  file_count=result.stats.file_count, storage=storage,
                  on_bytes=lambda n: setattr(ctx, "done", ctx.done + n))
    finished = timezone.now()
    ev = engine.EngineVolume(name=backup.volume_name, driver="local", mountpoint="", scope="local", options={},
                             labels={}, created_at=None)
    packed = tarstream.PackResult(stats=result.stats, sha256=sha, compressed_bytes=stored_bytes)
    manifest = build_manifest(backup=backup, ev=ev, packed=packed, engine_facts={}, finished_at=finished)
    if result.layout is Layout.DOT:
        manifest["archive"]["layout"] = (
            "tar, members under ./ (the volume's root); restore with `tar -xf <archive> -C <volume folder>`"
        )
    manifest["import"] = {
        "original_name": ctx.job.params.get("original_name", ""), "uploaded_format": fmt,
        "uploaded_bytes": ctx.job.params.get("size"), "uploaded_sha256": upload_sha,
        "root": result.layout.value, "devices": result.stats.others,
    }
    storage.write_json(manifest_key(key), manifest, token=backup.uid.hex)
    save_fields(backup, manifest=manifest, bytes_read=result.stats.tar_bytes, data_bytes=result.stats.data_bytes,
                size_bytes=stored_bytes, file_count=result.stats.file_count, sha256=sha, verified=True,
                verified_at=finished, verify_error="")
    return {"backup": backup.pk, "message": (
        f"Imported {backup.file_count} files ({result.layout.description}) as backup #{backup.pk} "
        f"of {backup.volume_name}; SHA-256 {backup.sha256}."
    )}


def _store_import(ctx: JobContext, f, fmt: str, key: str, backup: Backup, storage):
    # The archive is untrusted: its expanded size is bounded by the import limits (or the
    # Admin's for this import), refused before it is stored, long before a restore.
    limit = import_expansion_limit(ctx.job.params.get("size") or 0,
                                   override=ctx.job.params.get("max_expanded_bytes"))
    scanner = TarScanner(allow_devices=True, limit=limit)  # devices are refused at restore time unless allowed

    with storage.open_temp_writer(key, token=backup.uid.hex) as writer:
        if fmt in ("zstd", "gzip"):
            # Stored as uploaded: the user's own checksum of the file stays valid.
            reader = HashingReader(f, on_read=ctx.advance_checked, sink=writer)
            for chunk in tar_chunks(reader, fmt):
                scanner.feed(chunk)
            reader.drain()
            result = scanner.close()
            sha = upload_sha = reader.hexdigest()
            stored = reader.bytes_read
        else:
            reader = HashingReader(f, on_read=ctx.advance_checked)
            comp = tarstream.compressor("zstd", level=getattr(settings, "BACKUP_ZSTD_LEVEL", None))
            sink = tarstream.HashingWriter(writer)
            for chunk in tar_chunks(reader, "tar"):
                scanner.feed(chunk)
                sink.write(comp.feed(chunk))
            result = scanner.close()
            sink.write(comp.finish())
            sha, stored, upload_sha = sink.hexdigest(), sink.bytes_written, reader.hexdigest()
        ctx.say("Saving the archive")
        writer.commit()
    return result, sha, stored, upload_sha


def import_on_end(job: Job) -> None:
    """on_end of an import: the staged upload goes (imported or not), a failed import's
    archive is removed, the end is audited."""
    if job.params.get("staged"):
        try:
            staged_path(job.params["staged"]).unlink(missing_ok=True)
        except Refused:
            pass
    backup = backup_ended_cleanup(job)
    if backup is None:
        return
    ok = job.status == Job.Status.SUCCEEDED
    audit_record(
        action="backup_import", actor=job.created_by, actor_name=job.params.get("requested_by", ""),
        object_type="backup", object_name=str(backup.pk),
        params={"volume": backup.volume_name, "file": job.params.get("original_name", ""), "status": job.status,
                "sha256": backup.sha256, "location": backup.location},
        result="ok" if ok else "error", error="" if ok else job.error,
    )


def uploads_clean(*, older_than_seconds: int = 24 * 3600) -> list[str]:
    """Remove staged uploads no job will import (their job ended, or a day old and unknown)."""
    removed = []
    folder = Path(settings.UPLOAD_DIR)
    if not folder.is_dir():
        return removed
    pending = set(
        Job.objects.filter(kind=KIND_IMPORT, status__in=Job.ACTIVE).values_list("params__staged", flat=True)
    )
    now = time.time()
    for path in folder.iterdir():
        if path.name in pending or not path.is_file():
            continue
        if path.name.endswith(".partial") or _STAGED_NAME.match(path.name):
            try:
                if now - path.stat().st_mtime > older_than_seconds or (
                    _STAGED_NAME.match(path.name) and Job.objects.filter(
                        kind=KIND_IMPORT, params__staged=path.name).exclude(status__in=Job.ACTIVE).exists()
                ):
                    path.unlink()
                    removed.append(path.name)
            except FileNotFoundError:
                continue
    return removed
