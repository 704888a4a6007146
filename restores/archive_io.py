"""A stored archive, read for a restore: its checksums, one checking read, the streamed
write into a volume, and the limits and free space that bound it (worker side).

Every restore checks the whole archive before it touches anything: one streamed read
verifies the SHA-256 against the record and the manifest and validates every member
(tarstream.TarScanner). The write streams storage -> bounded decompression -> member
checks again -> GNU tar in the data helper (its stdin), or, without the helper image, the
engine's archive endpoint on a never-started helper container; uncompressed either way,
so what is extracted is byte for byte what was checked. The last piece (with the tar's
end marker) is only sent once the checksum of this second read matched too.
"""

from __future__ import annotations

import queue
import threading

from django.conf import settings

from backups.models import Backup
from backups.storage import StorageError, get_storage, manifest_key
from project.errors import CargoholdError, Refused
from tarstream import (
    ArchiveError,
    ArchiveTooLarge,
    ExpansionLimit,
    HashingReader,
    Layout,
    ScanResult,
    TarScanner,
    UnsafeArchive,
    size_text,
    tar_chunks,
    untrusted_limit,
)
from tarstream.hashing import ReadAheadHashingReader
from volumes import datahelper, engine

# Empties the volume's root but keeps the root itself (its owner and mode come back from
# the archive's `data/` member); fails loudly if anything is left.
EMPTY_COMMAND = ["sh", "-c", 'find /data -mindepth 1 -maxdepth 1 -exec rm -rf {} + && test -z "$(ls -A /data)"']


def recorded_checksum(backup: Backup, storage) -> str:
    """The SHA-256 the archive must have: the record's, which the manifests must agree with."""
    recorded = backup.sha256
    in_row = ((backup.manifest or {}).get("archive") or {}).get("sha256")
    try:
        in_storage = (storage.read_json(manifest_key(backup.key)).get("archive") or {}).get("sha256")
    except StorageError:
        in_storage = None  # an archive without a manifest file: the record alone decides
    for what, value in (("its manifest in the catalogue", in_row), ("its manifest in storage", in_storage)):
        if value is not None and value != recorded:
            raise UnsafeArchive(
                f"Backup #{backup.pk}: {what} gives the SHA-256 {value}, its record {recorded}. The archive or its "
                "manifest was changed; nothing was restored."
            )
    return recorded


def recorded_expansion(backup: Backup) -> ExpansionLimit:
    """How far a stored archive may expand: the tar size recorded when Cargohold made or
    imported it; without a record (an archive found in storage) the import limits apply."""
    if backup.bytes_read:
        return ExpansionLimit(backup.bytes_read, f"the size recorded for backup #{backup.pk}")
    return import_expansion_limit(backup.size_bytes or 0)


def import_expansion_limit(compressed_bytes: int, *, override: int | None = None) -> ExpansionLimit:
    """The import limits of the settings (ratio, floor, cap), or an Admin's for one import."""
    return untrusted_limit(compressed_bytes, ratio=settings.IMPORT_MAX_EXPANSION_RATIO,
                           cap=settings.IMPORT_MAX_EXPANDED_BYTES, floor=settings.IMPORT_EXPANSION_FREE_BYTES,
                           override=override)


def check_free_space(volume_name: str, *, needed: int | None, job_id: int) -> None:
    """Refuse a write that cannot fit: the free space of the volume's file system, as a
    helper container sees it on the mount (the engine reports none), against the file
    data the check pass counted. Unknown free space (df failed) lets the write go on."""
    if not needed:
        return
    free = engine.volume_free_bytes(volume_name, job_id=job_id)
    if free is not None and free < needed:
        raise Refused(
            f"The archive holds {size_text(needed)} of file data, but the file system of volume "
            f"{volume_name} has {size_text(free)} free; nothing was written."
        )


def check_archive(*, key: str, compression: str, sha256: str, allow_devices: bool, file_count: int | None = None,
                  storage=None, on_bytes=None, limit: ExpansionLimit | None = None) -> ScanResult:
    """Read a stored archive once: its SHA-256 and every member. Returns the ScanResult.

    Raises UnsafeArchive / ArchiveError / ArchiveTooLarge naming the problem; a changed
    checksum is named first (a tampered archive often also fails to parse).
    """
    storage = storage or get_storage()
    scanner = TarScanner(allow_devices=allow_devices, limit=limit)
    problem: CargoholdError | None = None
    with storage.open_reader(key) as raw:
        reader = HashingReader(raw, on_read=on_bytes)
        try:
            for chunk in tar_chunks(reader, compression):
                scanner.feed(chunk)
            result = scanner.close()
        except (ArchiveError, UnsafeArchive, ArchiveTooLarge) as exc:
            problem = exc
        reader.drain()
    actual = reader.hexdigest()
    if sha256 and actual != sha256:
        extra = f" ({problem})" if problem else ""
        raise ArchiveError(
            f"The archive's SHA-256 is {actual}, not the recorded {sha256}: it was changed or damaged in "
            f"storage{extra}."
        )
    if problem is not None:
        raise problem
    if file_count is not None and result.stats.file_count != file_count:
        raise ArchiveError(f"The archive holds {result.stats.file_count} files; {file_count} were recorded.")
    return result


def _tar_pieces(*, storage, key: str, compression: str, layout: Layout, allow_devices: bool, sha256: str,
                on_bytes=None, check_cancelled=None, limit: ExpansionLimit | None = None):
    """The archive as the engine gets it: uncompressed, checked again, names rewritten for
    the ./ layout. One piece is held back until the end, so the tar's end marker only
    reaches the engine once the whole stream checked out (checksum included)."""
    scanner = TarScanner(allow_devices=allow_devices, expect=layout, rewrite=layout is Layout.DOT, limit=limit)
    held = None
    with storage.open_reader(key) as raw:
        reader = HashingReader(raw)
        for chunk in tar_chunks(reader, compression):
            out = scanner.feed(chunk)
            piece = b"".join(out) if layout is Layout.DOT else chunk
            if on_bytes is not None:
                on_bytes(len(chunk))
            if check_cancelled is not None:
                check_cancelled()
            if held is not None:
                yield held
            held = piece
        reader.drain()
    scanner.close()
    if sha256 and reader.hexdigest() != sha256:
        raise ArchiveError(f"The archive changed while it was being restored (SHA-256 {reader.hexdigest()}).")
    if held:
        yield held


# Extracts the checked stream at / (every piece sent has its members under data/, the ./
# layout rewritten on the way), numeric owners, modes, user.* xattrs, file capabilities
# and ACLs kept; sparse members come back sparse. Other xattr namespaces (security.selinux,
# trusted.*) are not written: they belong to the host the archive came from.
RESTORE_TAR = (
    f"{datahelper.TAR} -x -p --numeric-owner --xattrs --xattrs-include='user.*' "
    "--xattrs-include='security.capability' --acls -f - -C /"
)


def write_archive(*, volume_name: str, key: str, compression: str, layout: Layout, allow_devices: bool,
                  sha256: str, job_id: int | None, storage=None, on_bytes=None, check_cancelled=None,
                  limit: ExpansionLimit | None = None, on_channel=None) -> str:
    """Stream a stored archive into the volume; returns the data path taken ("helper" or
    "engine", as backups.datapath names them).

    The data helper (GNU tar in a container that sees only this volume) when its image is
    on the engine, else a never-started helper container and the engine's archive
    endpoint. Either way the bytes extracted are exactly the bytes checked on this pass.
    `limit`: the size the check pass found; an archive that grew since is cut off there.
    """
    storage = storage or get_storage()
    pieces = _tar_pieces(
        storage=storage, key=key, compression=compression, layout=layout, allow_devices=allow_devices,
        sha256=sha256, on_bytes=on_bytes, check_cancelled=check_cancelled, limit=limit,
    )
    try:
        image = datahelper.data_helper_image()
        if image:
            helper_extract(volume_name, pieces, image=image, allow_devices=allow_devices, job_id=job_id,
                           on_channel=on_channel)
            return "helper"
        with engine.helper_container(volume_name, read_only=False, purpose="restore", job_id=job_id) as cid:
            engine.put_archive(cid, pieces, path="/")
        return "engine"
    finally:
        pieces.close()


# What crossed the data channel of a single-pass restore (the job's result `data_form`).
TAR_FORM = "tar"  # the tar the worker decompressed and checked: the helper only extracts (zstd ran once)
ZSTD_FORM = "zstd"  # the stored compressed bytes: the helper decompresses them again next to the data
FORM_LABELS = {
    TAR_FORM: "the uncompressed tar the worker checked (the helper runs tar -x only)",
    ZSTD_FORM: "the stored zstd bytes (the helper runs zstd -dc | tar -x)",
}


def channel_reporter(ctx):
    """An `on_channel` for a job: its result and log name the data channel that ran (and,
    when told, the form the data crossed it in)."""
    def report(channel: str, form: str | None = None) -> None:
        ctx.result["data_channel"] = channel
        ctx.log(f"Data channel: {datahelper.CHANNEL_LABELS[channel]}")
        if form is not None:
            ctx.result["data_form"] = form
            ctx.log(f"Data sent to the helper: {FORM_LABELS[form]}")
    return report


def _say_channel(on_channel, helper, form: str | None = None) -> None:
    if on_channel is not None:
        if form is None:
            on_channel(helper.channel)
        else:
            on_channel(helper.channel, form)


def helper_extract(volume_name: str, pieces, *, image: str, allow_devices: bool, job_id: int | None,
                   tar_options: str = "", on_channel=None) -> None:
    """Send checked tar pieces to GNU tar's stdin in the data helper (RESTORE_TAR plus
    `tar_options`); the caller's pieces hold back what must wait (`_tar_pieces`: the end
    marker until the checksum matched). The pieces are closed whatever happens. The
    data goes through the data channel (volumes.datahelper: a FIFO beside the engine, else
    the attach stream); `on_channel(name)` hears which."""
    caps = datahelper.WRITE_CAPS + (datahelper.DEVICE_CAPS if allow_devices else ())
    extract = RESTORE_TAR + (f" {tar_options}" if tar_options else "")

    def command(source: str | None) -> list[str]:
        return datahelper.step_script(extract + (f" < {source}" if source else ""))

    with datahelper.data_helper(volume_name, image=image, command=command, read_only=False, caps=caps, stdin=True,
                                purpose="restore", job_id=job_id, channel=datahelper.IN) as helper:
        _say_channel(on_channel, helper)
        drained = threading.Thread(target=helper.finish_output, daemon=True, name="data helper output")
        drained.start()  # tar's messages must not fill the pipe while we write
        try:
            for piece in pieces:
                helper.write(piece)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        helper.close_input()
        drained.join()
        status = helper.finish()
        code = helper.step_codes().get(0, -1)
    if status != 0 or code != 0:
        raise engine.EngineError(
            f"Extracting in the data helper failed (tar exit {code}): {helper.messages().strip()[-1000:]}"
        )


# --- one pass: check and write overlapped (own archives, new volumes) ----------------------


def single_pass_image(backup: Backup, *, in_place: bool) -> str | None:
    """The data helper image when a restore may check and write in ONE read of the archive,
    else None (the check pass runs first, as for every restore before).

    Only where that is safe: the backup is Cargohold's own (zstd, members under data/,
    tar size and file count recorded: not an import, whose layout and limits come from the
    check pass), the target is a NEW volume (a failure removes it; in place the old
    content must not be emptied for an archive that then turns out broken), and the data
    helper runs (write_archive_single_pass: the checked tar on the FIFO, the compressed
    bytes on the attach stream)."""
    if in_place or backup.origin == Backup.Origin.IMPORTED or backup.compression != "zstd":
        return None
    if not backup.bytes_read or backup.file_count is None:
        return None
    return datahelper.data_helper_image()


class _HeldBackSender:
    """Chunks (compressed, or the checked tar) to the helper from a thread (the worker checks chunk i+1
    while the helper extracts chunk i), each chunk only once everything decompressible
    from it was checked, and the last one only when `release()` is called after the
    whole pass (checksum, end marker, counts) checked out. Memory: `depth` chunks."""

    def __init__(self, helper, *, depth: int = 8):
        self._helper = helper
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._held = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="data helper input")
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self.error is None:
                try:
                    self._helper.write(chunk)
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self.error = exc

    def _put(self, chunk) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(chunk)

    def write(self, chunk) -> None:
        # Called by HashingReader as the decompressor asks for the next chunk: by then
        # all the output of the chunks before it was returned and checked.
        if self._held is not None:
            self._put(self._held)
        self._held = bytes(chunk)

    def release(self) -> None:
        if self._held is not None:
            self._put(self._held)
            self._held = None
        self.close()
        if self.error is not None:
            raise self.error
        self._helper.close_input()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def write_archive_single_pass(*, volume_name: str, key: str, sha256: str, allow_devices: bool, job_id: int | None,
                              image: str, storage, file_count: int | None, limit: ExpansionLimit | None,
                              on_bytes=None, check_cancelled=None, on_channel=None) -> ScanResult:
    """Read the stored archive once: hash it and check every member in the worker while
    the data helper extracts next to the data. The helper never gets a piece before its
    members were checked, nor the last piece before the checksum, the end marker and the
    file count were; on any problem the helper is killed and the caller removes the
    volume. Returns the check's result.

    What the helper gets depends on the data channel (`on_channel(name, form)` hears both):
    on the FIFO beside the engine (nothing crosses a network, dockerd relays nothing) the
    tar the worker just decompressed and checked, so the helper runs `tar -x` alone and
    zstd runs once per byte instead of twice on the same cores (TAR_FORM); on the attach
    stream (maybe a remote engine, TLS) the stored compressed bytes, which the helper runs
    through `zstd -dc | tar -x` (ZSTD_FORM): a quarter to a half of the bytes travel."""
    scanner = TarScanner(allow_devices=allow_devices, expect=Layout.DATA, limit=limit)
    caps = datahelper.WRITE_CAPS + (datahelper.DEVICE_CAPS if allow_devices else ())

    tar_on_fifo = getattr(settings, "RESTORE_FIFO_FORM", TAR_FORM) == TAR_FORM

    def command(source: str | None) -> list[str]:
        if source and tar_on_fifo:  # the FIFO: the checked tar itself
            return datahelper.step_script(f"{RESTORE_TAR} < {source}")
        return datahelper.step_script(f"{datahelper.ZSTD} -q -d -c" + (f" < {source}" if source else ""),
                                      RESTORE_TAR)

    with datahelper.data_helper(volume_name, image=image, command=command, read_only=False, caps=caps, stdin=True,
                                purpose="restore", job_id=job_id, channel=datahelper.IN) as helper:
        plain = helper.channel == datahelper.FIFO and tar_on_fifo
        _say_channel(on_channel, helper, TAR_FORM if plain else ZSTD_FORM)
        drained = threading.Thread(target=helper.finish_output, daemon=True, name="data helper output")
        drained.start()  # tar's messages must not fill the pipe while we write
        sender = _HeldBackSender(helper)
        try:
            # ZSTD_FORM: each compressed chunk goes as the decompressor asks for the next
            # (all it decompressed from the ones before was checked by then); TAR_FORM:
            # each decompressed chunk once the scanner passed it (nothing past the end
            # marker but zeros passes: the walker refuses it). Read and hashed a few
            # chunks ahead in a thread: the SHA-256 overlaps the decompression (both let
            # go of the GIL).
            with storage.open_reader(key) as raw, \
                    ReadAheadHashingReader(raw, on_read=on_bytes, sink=None if plain else sender) as reader:
                for chunk in tar_chunks(reader, "zstd"):
                    scanner.feed(chunk)
                    if plain:
                        sender.write(chunk)
                    if check_cancelled is not None:
                        check_cancelled()
                reader.drain()
            result = scanner.close()
            actual = reader.hexdigest()
            if sha256 and actual != sha256:
                raise ArchiveError(
                    f"The archive's SHA-256 is {actual}, not the recorded {sha256}: it was changed or damaged in "
                    "storage.")
            if file_count is not None and result.stats.file_count != file_count:
                raise ArchiveError(f"The archive holds {result.stats.file_count} files; {file_count} were recorded.")
            sender.release()
        except BaseException:
            helper.abort()  # a write blocked on a helper that no longer reads must not hold the close
            raise
        finally:
            sender.close()
        drained.join()
        status = helper.finish()
        codes = helper.step_codes()
    if plain:
        tar_code = codes.get(0, -1)
        failed = f"tar exit {tar_code}"
        ok = status == 0 and tar_code == 0
    else:
        zstd_code, tar_code = codes.get(0, -1), codes.get(1, -1)
        failed = f"zstd exit {zstd_code}, tar exit {tar_code}"
        ok = status == 0 and zstd_code == 0 and tar_code == 0
    if not ok:
        raise engine.EngineError(f"Extracting in the data helper failed ({failed}): {helper.messages().strip()[-1000:]}")
    return result


def empty_volume(*, volume_name: str, job_id: int | None) -> None:
    engine.run_helper(volume_name, EMPTY_COMMAND, timeout=settings.RESTORE_EMPTY_TIMEOUT_SECONDS,
                      purpose="restore-empty", job_id=job_id)
