"""The catalogue from storage: rebuild the backup rows from the manifests beside the
archives (the database is not the only copy of what exists).

A backup found this way gets a job of kind "backup_found", recorded as succeeded when it
is found (no worker ran it here), so its state reads like any other backup's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone as dt_timezone

from django.db import transaction
from django.utils import timezone

import tarstream
from accounts.services import audit_record
from backups.models import Backup
from backups.services import KIND_FOUND
from backups.storage import MANIFEST_SUFFIX, StorageError, get_storage
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


def backups_rescan() -> dict:
    """Rebuild the catalogue from the manifests in storage. Adds rows for manifests it
    does not know, refreshes where known ones are, flags rows whose archive is gone, and
    lists archives without manifests. Manifests are untrusted input: anything malformed is
    reported and skipped."""
    storage = get_storage()
    report = {"added": [], "updated": [], "missing": [], "orphans": [], "invalid": []}
    seen_keys = set()
    for mkey, akey in storage.list_manifests():
        seen_keys.add(akey)
        try:
            data = storage.read_json(mkey)
            row, times = _row_from_manifest(data, akey, storage)
        except (StorageError, ValueError, KeyError, TypeError) as exc:
            report["invalid"].append(f"{mkey}: {exc}")
            continue
        existing = Backup.objects.filter(uid=row["uid"]).first()
        if existing is None:
            existing = Backup.objects.filter(key=akey).first()
        if existing is not None:
            if existing.key != akey or existing.missing:
                Backup.objects.filter(pk=existing.pk).update(key=akey, location=row["location"], missing=False)
                report["updated"].append(existing.pk)
            continue
        report["added"].append(_backup_found(row, **times).pk)
    for key in storage.list_keys():
        if not key.endswith(MANIFEST_SUFFIX) and key not in seen_keys:
            report["orphans"].append(storage.location(key))
    for backup in Backup.objects.filter(status=Backup.Status.SUCCEEDED).exclude(key=""):
        missing = backup.key not in seen_keys and not storage.exists(backup.key)
        if missing != backup.missing:
            Backup.objects.filter(pk=backup.pk).update(missing=missing)
        if missing:
            report["missing"].append(backup.pk)
    audit_record(action="backup_rescan", object_type="storage", object_name=storage.name,
                 params={k: len(v) for k, v in report.items()})
    return report


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
