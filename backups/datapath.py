"""A backup's data path: through the data helper next to the data, or through the
engine's archive endpoint (the fallback), worker side.

The helper path runs GNU tar and pzstd (zstd's parallel compressor, which writes
independent frames of 1 << (windowLog + 2) bytes of tar, 8 MiB at level 3, each behind a
skippable frame with its size: tarstream.frames) in a short-lived container on the volume's engine
(volumes.datahelper.data_helper: read-only mount, no network, read-only root, only the
DAC_READ_SEARCH capability) and stores its output as it comes: only compressed bytes
cross, through a FIFO beside the engine when the worker runs there (dockerd relays
nothing), else the engine's attach stream (volumes.datahelper.data_channel). On the
way the worker hashes them and decompresses them to walk the tar
(tarstream.store_compressed), so the stored bytes themselves are proven a complete tar
before anything is committed. Pax format keeps what dockerd's tar writer
loses: user.* xattrs, POSIX ACLs, sub-second times, sparse files.

The engine path (gzip backups, DATA_PATH=engine, no helper image) reads dockerd's tar of
the volume and compresses it in the worker (tarstream.pack; zstd ends a frame every
BACKUP_FRAME_BYTES too). Both paths write the file index (backups.file_index) from the
headers the walker reads anyway.
"""

from __future__ import annotations

from contextlib import closing

from django.conf import settings

import tarstream
from backups import file_index
from project.db import save_fields
from volumes import datahelper, engine

PZSTD = "/usr/bin/pzstd"  # zstd's parallel compressor (Debian's zstd package; the data helper image)

HELPER = "helper"
ENGINE = "engine"
PATH_LABELS = {HELPER: "data helper (tar | zstd next to the data)", ENGINE: "engine archive endpoint"}

# Members under data/ (the layout every Cargohold archive has), in pax format with every
# xattr, ACLs, sparse files and numeric owners; atime/ctime records left out (they change
# at each read and a restore cannot set ctime anyway).
BACKUP_TAR = (
    f"{datahelper.TAR} --format=pax --pax-option=delete=atime,delete=ctime --xattrs --xattrs-include='*' --acls "
    "--sparse --numeric-owner -C / -cf - data"
)


def backup_data_path(compression: str) -> tuple[str, str | None]:
    """(path, image): the helper only compresses zstd (gzip stays on the engine path)."""
    if compression != "zstd":
        return ENGINE, None
    image = datahelper.data_helper_image()
    return (HELPER, image) if image else (ENGINE, None)


def frame_bytes() -> int:
    """The tar bytes per zstd frame (BACKUP_FRAME_BYTES; whole tar blocks)."""
    size = int(getattr(settings, "BACKUP_FRAME_BYTES", 0) or (32 << 20))
    return max(tarstream.BLOCK, size // tarstream.BLOCK * tarstream.BLOCK)


def helper_compress_step(level: int) -> str:
    """pzstd: independent zstd frames (its own size: 8 MiB of tar at level 3), compressed
    in parallel, concatenated into one zstd stream any reader takes (`zstd -dc`, `tar
    --zstd`). Measured against GNU split cutting frames for one zstd per piece: split
    doubled the backup's time (1 GiB: 2.2 s vs 1.3 s; plain `zstd -T0` 1.1 s)."""
    return f"{PZSTD} -q -c -{int(level)}"


def backup_command(level: int, target: str | None) -> list[str]:
    """tar | pzstd in the data helper, into `target` (the data channel's FIFO) or stdout."""
    compress = helper_compress_step(level) + (f" > {target}" if target else "")
    return datahelper.step_script(BACKUP_TAR, compress)


def helper_backup_stream(ctx, backup, writer, *, image: str) -> tarstream.PackResult:
    """Run tar | pzstd in the data helper and store its output into `writer` (hashed,
    walked, indexed: backups.file_index), through the data channel (a FIFO beside the
    engine, else the attach stream; the job's result names it: `data_channel`). Raises
    EngineError when tar or zstd failed, ArchiveError when the stream is not a complete
    tar; the caller removes the helper (cancel kills it)."""
    level = getattr(settings, "BACKUP_ZSTD_LEVEL", None) or tarstream.ZSTD_LEVEL
    index = file_index.index_writer(backup)
    with datahelper.data_helper(backup.volume_name, image=image,
                                command=lambda target: backup_command(level, target), read_only=True,
                                caps=datahelper.READ_CAPS, purpose="backup", job_id=ctx.job.pk,
                                channel=datahelper.OUT) as helper:
        ctx.result["data_channel"] = helper.channel
        helper.on_wait = ctx.check_cancelled
        ctx.log(f"Data channel: {datahelper.CHANNEL_LABELS[helper.channel]}")
        try:
            with closing(helper.output()) as chunks:
                packed = tarstream.store_compressed(chunks, writer, compression="zstd",
                                                    on_chunk=ctx.advance_checked, on_entry=index.add)
        except tarstream.ArchiveError as exc:
            raise tarstream.ArchiveError(f"{exc} {_helper_words(helper)}".strip()) from None
        status = helper.finish()
        codes = helper.step_codes()
    index.close()
    tar_code, zstd_code = codes.get(0, -1), codes.get(1, -1)
    # GNU tar's 1: a file changed while it was read (the archive is whole; the job says so).
    if status != 0 or zstd_code != 0 or tar_code not in (0, 1):
        raise engine.EngineError(
            f"The data helper failed (tar exit {tar_code}, zstd exit {zstd_code}): {_helper_words(helper)}"
        )
    if tar_code == 1:
        ctx.result["warnings"] = helper.messages()[-1000:]
    return packed


def _helper_words(helper) -> str:
    words = helper.messages().strip()
    return f"What the helper said: {words[-1000:]}" if words else ""


def engine_backup_stream(ctx, backup, writer) -> tarstream.PackResult:
    """dockerd's tar of the volume, compressed in the worker."""
    level = getattr(settings, "BACKUP_ZSTD_LEVEL", None) if backup.compression == "zstd" else \
        getattr(settings, "BACKUP_GZIP_LEVEL", None)
    index = file_index.index_writer(backup)
    with engine.helper_container(backup.volume_name, read_only=True, purpose="backup", job_id=ctx.job.pk) as cid:
        # closing(): on cancel or error the stream must end now, not when the traceback
        # is collected; the engine will not remove the helper before. (Reading in a
        # thread ahead of the compressor was measured: no faster here, since zstd
        # compresses in its own threads, and 25 MiB more memory.)
        try:
            with closing(engine.archive_stream(cid)) as chunks:
                packed = tarstream.pack(chunks, writer, compression=backup.compression,
                                        on_chunk=ctx.advance_checked, level=level, frame_bytes=frame_bytes(),
                                        on_entry=index.add)
        finally:
            save_fields(backup, bytes_read=ctx.done)
    index.close()
    return packed
