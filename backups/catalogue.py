"""The catalogue from storage: rebuild the backup rows from the manifests beside the
archives (the database is not the only copy of what exists).

A backup found this way gets a job of kind "backup_found", recorded as succeeded when it
is found (no worker ran it here), so its state reads like any other backup's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone as dt_timezone

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import tarstream
from accounts.services import audit_record
from backups.models import Backup
from backups.services import KIND_FOUND
from backups.storage import MANIFEST_SUFFIX, StorageError, get_storage, storage_for
from backups.worker import FORMAT, FORMAT_VERSION
from jobs.models import Job
from jobs.services import job_create
from volumes.models import Volume


def _parse_iso(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _rescanned_repositories() -> list:
    """Every repository to rescan, the built-in folder first (made on first use)."""
    from repositories.models import Repository
    from repositories.selectors import repository_default

    repository_default()  # the built-in folder has its row from here on
    builtin = list(Repository.objects.filter(builtin=True))
    return builtin + list(Repository.objects.filter(builtin=False).order_by("name"))


def _rows_of(repository):
    """The catalogue rows that live in `repository` (the built-in folder's include the
    rows from before repositories, whose repository is null)."""
    if repository.builtin:
        return Backup.objects.filter(Q(repository=repository) | Q(repository__isnull=True))
    return Backup.objects.filter(repository=repository)


def backups_rescan() -> dict:
    """Rebuild the catalogue from every repository: the manifests beside the archives of
    each archive repository, the Cargohold-tagged snapshots of each restic one. Adds rows
    for what it does not know, refreshes where known ones are, flags rows whose archive
    is gone, and lists archives without manifests. Manifests are untrusted input:
    anything malformed is reported and skipped. A repository that cannot be listed is
    reported (under "unreachable") and its rows are left as they were: an unreachable
    bucket does not make its backups "missing"."""
    report = {"added": [], "updated": [], "missing": [], "orphans": [], "invalid": [], "unreachable": []}
    for repository in _rescanned_repositories():
        try:
            if repository.is_restic:
                _rescan_restic(repository, report)
            else:
                _rescan_archives(repository, report)
        except Exception as exc:  # whatever the backend raised: this repository is skipped, not emptied
            report["unreachable"].append(f"{repository.name}: {exc}")
    audit_record(action="backup_rescan", object_type="storage", object_name="all repositories",
                 params={k: len(v) for k, v in report.items()})
    return report


def _rescan_archives(repository, report: dict) -> None:
    storage = get_storage() if repository.builtin else storage_for(repository)
    rows = _rows_of(repository)
    # Listed first, whole: a listing that fails half-way must not flag anything missing.
    keys = list(storage.list_keys())
    seen_keys = set()
    for key in keys:
        if not key.endswith(MANIFEST_SUFFIX):
            continue
        mkey, akey = key, key[: -len(MANIFEST_SUFFIX)]
        seen_keys.add(akey)
        try:
            data = storage.read_json(mkey)
            row, times = _row_from_manifest(data, akey, storage)
        except (StorageError, ValueError, KeyError, TypeError) as exc:
            report["invalid"].append(f"{storage.location(mkey)}: {exc}")
            continue
        existing = rows.filter(key=akey).first() or rows.filter(
            Q(uid=row["uid"]) | Q(copy_of__uid=row["uid"])).first()
        if existing is not None:
            if existing.key != akey or existing.missing:
                Backup.objects.filter(pk=existing.pk).update(key=akey, location=row["location"], missing=False)
                report["updated"].append(existing.pk)
            continue
        row["repository"] = repository
        # The same manifest in a second repository is a policy's copy: its own row, the
        # first one found its original (uids are unique in the catalogue).
        original = Backup.objects.filter(uid=row["uid"]).first()
        if original is not None:
            row["uid"], row["copy_of"] = uuid.uuid4(), original
        found = _backup_found(row, **times)
        # Browsing and partial restores for a found archive: its file index, if stored beside it.
        from backups.file_index import index_import

        index_import(found, storage)
        report["added"].append(found.pk)
    for key in keys:
        if not key.endswith(MANIFEST_SUFFIX) and key not in seen_keys and not _is_beside_archive(key, seen_keys):
            report["orphans"].append(storage.location(key))
    for backup in rows.filter(status=Backup.Status.SUCCEEDED).exclude(key=""):
        missing = backup.key not in seen_keys and not storage.exists(backup.key)
        if missing != backup.missing:
            Backup.objects.filter(pk=backup.pk).update(missing=missing)
        if missing:
            report["missing"].append(backup.pk)


def _is_beside_archive(key: str, archive_keys: set[str]) -> bool:
    """A dump stored next to an archive (`<archive key>.<recipe>...`) is not an orphan."""
    return any(key.startswith(a + ".") for a in archive_keys)


def _rescan_restic(repository, report: dict) -> None:
    """The Cargohold-tagged snapshots of a restic repository (repositories.restic's
    `restic_snapshots`), one row each; rows whose snapshot is gone are flagged missing."""
    from repositories import restic

    if not hasattr(restic, "restic_snapshots"):
        report["unreachable"].append(f"{repository.name}: restic snapshots cannot be listed by this Cargohold yet.")
        return
    snapshots = list(restic.restic_snapshots(repository))
    rows = _rows_of(repository)
    seen = set()
    for snap in snapshots:
        sid, tags = snap.get("id"), snap.get("tags") or []
        if not isinstance(sid, str) or not sid or not isinstance(tags, list):
            report["invalid"].append(f"{repository.name}: a snapshot without id or tags")
            continue
        seen.add(sid)
        tag = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in tags if isinstance(t, str) and ":" in t}
        name = tag.get("volume", "")
        if not name or len(name) > 255:
            report["invalid"].append(f"{repository.name}: snapshot {sid[:8]} names no volume")
            continue
        existing = rows.filter(snapshot_id=sid).first()
        if existing is not None:
            if existing.missing:
                Backup.objects.filter(pk=existing.pk).update(missing=False)
                report["updated"].append(existing.pk)
            continue
        try:
            uid = uuid.UUID(hex=tag.get("backup", ""))
        except ValueError:
            uid = uuid.uuid4()
        if Backup.objects.filter(uid=uid).exists():
            uid = uuid.uuid4()
        at = snap.get("time") if isinstance(snap.get("time"), datetime) else \
            _parse_iso(snap.get("time_text") or snap.get("time"))
        summary = snap.get("summary") if isinstance(snap.get("summary"), dict) else {}
        row = {
            "uid": uid, "volume": Volume.objects.filter(name=name).first(), "volume_name": name,
            "origin": Backup.Origin.IMPORTED, "compression": Backup.Compression.ZSTD, "storage": "restic",
            "repository": repository, "snapshot_id": sid, "key": "",
            "location": f"{repository.url} snapshot {sid[:8]}",
            "file_count": _int_or_none(summary.get("total_files_processed")),
            "data_bytes": _int_or_none(summary.get("total_bytes_processed")),
            "stopped_containers": [], "manifest": {},
        }
        report["added"].append(_backup_found(row, started_at=at, finished_at=at).pk)
    for backup in rows.filter(status=Backup.Status.SUCCEEDED).exclude(snapshot_id=""):
        missing = backup.snapshot_id not in seen
        if missing != backup.missing:
            Backup.objects.filter(pk=backup.pk).update(missing=missing)
        if missing:
            report["missing"].append(backup.pk)


def _backup_found(row: dict, *, started_at: datetime | None, finished_at: datetime | None) -> Backup:
    """A row for a backup found in storage, with its job: succeeded (its manifest is
    written last, so it promises a verified archive) and ended already, so no worker
    runs it and no on_end follows."""
    with transaction.atomic():
        job = job_create(kind=KIND_FOUND, target=row["volume_name"], trigger="rescan", enqueue=False)
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.SUCCEEDED, started_at=started_at, finished_at=finished_at or timezone.now(),
            end_handled=True, progress_message="Found in storage by a rescan.",
        )
        return Backup.objects.create(job=job, started_at=started_at, **row)


def _row_from_manifest(data: dict, akey: str, storage) -> tuple[dict, dict]:
    """The row's fields and the run's times from an untrusted manifest (ValueError, KeyError
    or TypeError when it is not one Cargohold would write)."""
    if data.get("format") != FORMAT or not isinstance(data.get("format_version"), int):
        raise ValueError("not a Cargohold manifest")
    if data["format_version"] > FORMAT_VERSION:
        raise ValueError(f"format version {data['format_version']} is newer than this Cargohold")
    vol = data["volume"]
    arch = data["archive"]
    name = vol["name"]
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ValueError("bad volume name")
    compression = arch["compression"]
    if compression not in tarstream.COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}")
    sha = arch.get("sha256") or ""
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError("bad sha256")
    if not storage.exists(akey):
        raise ValueError("its archive is missing")
    origin = data.get("origin") if data.get("origin") in Backup.Origin.values else Backup.Origin.IMPORTED
    if "import" in data:
        # Cargohold writes this section only for imports: a manifest that has it and claims
        # another origin was edited, and must not make the archive pass for a volume's own.
        origin = Backup.Origin.IMPORTED
    row = {
        "uid": uuid.UUID(hex=str(data["uid"])),
        "volume": Volume.objects.filter(name=name).first(),
        "volume_name": name,
        "origin": origin,
        "compression": compression,
        "storage": storage.name,
        "key": akey,
        "location": storage.location(akey),
        "bytes_read": _int_or_none(data.get("uncompressed_bytes")) or 0,
        "data_bytes": _int_or_none((data.get("content") or {}).get("data_bytes")),
        "size_bytes": _int_or_none(arch.get("compressed_bytes")),
        "file_count": _int_or_none(data.get("file_count")),
        "sha256": sha,
        "stopped_containers": [],
        "manifest": data,
    }
    return row, {"started_at": _parse_iso(data.get("started_at")), "finished_at": _parse_iso(data.get("finished_at"))}
