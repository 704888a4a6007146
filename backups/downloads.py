"""Downloads of one file or folder of a backup, web side: an archive backup's member is
streamed straight from storage (backups.partial reads only the frames that hold it and
yields it in chunks as the response is sent), so memory stays bounded whatever the
member's size. Restic backups are extracted by a worker first (backups.extract): the
web tier never runs restic."""

from __future__ import annotations

from collections.abc import Iterator

from django.http import Http404, StreamingHttpResponse
from django.utils.http import content_disposition_header

from accounts.services import audit_record
from backups.models import Backup, BackupEntry
from project.errors import CargoholdError


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Read the first chunk now, so an error before any byte (storage unreachable, the
    archive not matching its index) is an error page; a later one breaks the download
    off rather than end it as if complete."""
    chunks = iter(chunks)
    first = next(chunks, None)

    def rest():
        try:
            if first is not None:
                yield first
            yield from chunks
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    return rest()


def safe_file_name(name: str, *, suffix: str = "") -> str:
    """A name for Content-Disposition: no control characters, separators or quotes, at most 200
    characters (the header's encoding does the rest); never empty."""
    cleaned = "".join("_" if (ord(c) < 32 or c in '/\\"\x7f') else c for c in name).strip(" .")
    return (cleaned[:200] or "download") + suffix


def download_name(backup: Backup, entry: BackupEntry) -> tuple[str, str]:
    """(file name, content type) of a member's download: the file itself, or a .tar."""
    if entry.kind == BackupEntry.Kind.DIR:
        return safe_file_name(entry.name or backup.volume_name, suffix=".tar"), "application/x-tar"
    return safe_file_name(entry.name), "application/octet-stream"


def is_restic(backup: Backup) -> bool:
    return bool(backup.snapshot_id)


def downloadable(entry: BackupEntry) -> bool:
    return entry.kind in (BackupEntry.Kind.FILE, BackupEntry.Kind.DIR, BackupEntry.Kind.HARDLINK)


def member_download_response(request, *, backup: Backup, entry: BackupEntry) -> StreamingHttpResponse:
    """One file's bytes or one folder as a tar, streamed from an archive backup's storage,
    audited like the whole archive's download."""
    from backups import partial

    params = {"volume": backup.volume_name, "path": entry.path, "kind": entry.kind}
    try:
        if entry.kind == BackupEntry.Kind.DIR:
            body = _primed(partial.member_tar_stream(backup, entry.path))
        else:
            body = _primed(partial.read_file_bytes(backup, entry.path))
    except CargoholdError as exc:
        audit_record(action="backup_file_download", request=request, object_type="backup",
                     object_name=str(backup.pk), params=params, result="error", error=str(exc))
        raise Http404(str(exc)) from None
    audit_record(action="backup_file_download", request=request, object_type="backup", object_name=str(backup.pk),
                 params=params)
    name, content_type = download_name(backup, entry)
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, name)
    if entry.kind == BackupEntry.Kind.FILE:  # (a hard link's header says 0: its bytes are its target's)
        response["Content-Length"] = str(entry.size)
    response["X-Content-Type-Options"] = "nosniff"
    return response
