"""Fixtures for restore tests: volumes with every kind of content, listings made inside a
container, and running the real jobs in this process (jobs.runner.job_perform) against the
real engine."""

import io
import os
import tarfile

import pytest

from tests import dockercli

# Everything a restore must bring back, built with the helper image's busybox. Owners are
# set before modes (chown clears setuid/setgid), times last and bottom-up (creating an
# entry changes its folder's mtime).
FIDELITY_SCRIPT = r"""
set -e
cd /data
mkdir -p dir/sub emptydir sticky setgid-dir deep/a/b/c
printf 'hello\n' > dir/hello.txt
head -c 300000 /dev/urandom > dir/sub/random.bin
: > empty-file
printf 'x' > 'name with spaces'
printf 'y' > "$(printf 'caf\351-latin1')"
ln -s hello.txt dir/rel-link
ln -s /etc/passwd abs-link
ln -s missing dangling
ln -s ../../.. deep/a/up-link
ln dir/hello.txt dir/hard1
ln dir/hello.txt hard2
mkfifo fifo
dd if=/dev/zero of=sparse.img bs=1 count=0 seek=33554432 2>/dev/null
printf 'middle' | dd of=sparse.img bs=1 seek=16777216 conv=notrunc 2>/dev/null
printf '#!/bin/sh\necho hi\n' > suid
printf 'g' > sgid
chown 1234:4321 dir/hello.txt
chown -R 1000:1000 dir/sub
chown -h 77:88 dir/rel-link
chown -h 99:98 abs-link
chown 5:6 fifo
chown 1234:0 suid
chown 0:50 sgid
chown 4242:4242 deep/a
chown 1000:1000 /data
chmod 4755 suid
chmod 2711 sgid
chmod 1777 sticky
chmod 2770 setgid-dir
chmod 0600 dir/sub/random.bin
chmod 0640 dir/hello.txt
chmod 0751 dir
chmod 0750 /data
touch -h -d '2001-02-03 04:05:06' dir/rel-link abs-link dangling deep/a/up-link
touch -d '2002-03-04 05:06:07' dir/hello.txt dir/sub/random.bin empty-file 'name with spaces' suid sgid sparse.img fifo
touch -d '2003-04-05 06:07:08' deep/a/b/c deep/a/b deep/a deep dir/sub
touch -d '2004-05-06 07:08:09' dir emptydir sticky setgid-dir
touch -d '2005-06-07 08:09:10' /data
"""

LISTING_SCRIPT = (
    "cd /data && find . -exec stat -c '%i|%n|%f|%u|%g|%s|%Y|%h|%b|%N' {} + "
    "&& echo '--' && find . -type f -exec sha256sum {} +"
)


def listing(volume: str) -> dict:
    """What a person would compare: for every path its type+mode, owner, size, mtime, link
    target, content hash, and which paths are hardlinks of each other (inode numbers and
    allocated blocks are reported apart: they may differ)."""
    out = dockercli.docker("run", "--rm", "--network", "none", "--label", dockercli.TEST_LABEL,
                           "-v", f"{volume}:/data:ro", dockercli.HELPER_IMAGE, "sh", "-c", LISTING_SCRIPT)
    stats, _, sums = out.partition("\n--\n")
    entries, inodes, blocks = {}, {}, {}
    for line in stats.splitlines():
        inode, name, mode, uid, gid, size, mtime, nlink, nblocks, shown = line.split("|", 9)
        target = shown.split(" -> ", 1)[1] if " -> " in shown else ""
        entries[name] = {"mode": mode, "uid": uid, "gid": gid, "size": size, "mtime": mtime, "nlink": nlink,
                         "target": target}
        inodes.setdefault(inode, []).append(name)
        blocks[name] = int(nblocks)
    for line in sums.splitlines():
        digest, name = line.split(None, 1)
        entries[name]["sha256"] = digest
    for names in inodes.values():
        for name in names:
            entries[name]["links"] = sorted(names)
    return {"entries": entries, "blocks": blocks}


@pytest.fixture
def no_enqueue(monkeypatch):
    """Jobs are created but not sent to Redis: the test runs them itself (job_perform)."""
    monkeypatch.setattr("jobs.services.job_enqueue", lambda **kwargs: None)


@pytest.fixture
def backup_root(settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.UPLOAD_DIR = tmp_path / "uploads"
    return settings.BACKUP_ROOT


@pytest.fixture
def make_volume():
    """A volume filled by a busybox script, known to the mirror."""
    from volumes.services import mirror_sync

    def make(script: str = FIDELITY_SCRIPT, **kwargs) -> str:
        name = dockercli.create_volume(**kwargs)
        if script:
            dockercli.fill_volume(name, script)
        mirror_sync()
        return name

    return make


def run_backup_now(volume_name: str, **kwargs):
    """Back a volume up with the backups app's own service and handler, in this process."""
    from unittest import mock

    from backups import services
    from jobs.runner import job_perform

    # Never enqueued, even where a real worker runs (it would race us for the job).
    with mock.patch("jobs.services.job_enqueue"):
        backup = services.backup_start(volume_name=volume_name, **kwargs)
    job_perform(backup.job_id)
    backup.refresh_from_db()
    assert backup.status == "succeeded", backup.error
    return backup


def run_restore(restore):
    """Run a queued restore's job with the real runner and its kind, in this process."""
    from jobs.runner import job_perform

    job_perform(restore.job_id)
    restore.refresh_from_db()
    restore.job.refresh_from_db()
    return restore


def wait_until_writing(restore, *, timeout: float) -> None:
    """Wait until the restore's worker writes into the volume (bytes reported); fail at once
    if its job ended before (nothing would be tested)."""
    from jobs.models import Job
    from tests.conftest import wait_for

    def writing():
        restore.refresh_from_db()
        job = Job.objects.get(pk=restore.job_id)
        assert job.status in ("queued", "running"), f"the job ended before the write: {job.status} {job.error}"
        return restore.phase == "writing" and job.progress_done > 0

    wait_for(writing, timeout=timeout, interval=0.05, message="the restore to write into the volume")


def run_import(path, volume_name: str, **kwargs):
    from jobs.runner import job_perform

    from backups.imports import import_start

    backup = import_start(source=path, volume_name=volume_name, staged=False, trigger="cli", **kwargs)
    job_perform(backup.job_id)
    backup.refresh_from_db()
    return backup


def store_crafted_backup(volume_name: str, members, *, compression: str = "zstd"):
    """A backup row + archive in storage built from tar members (for hostile or odd archives):
    recorded with its true checksum, so only the member checks can refuse it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return store_raw_backup(volume_name, buf.getvalue(), compression=compression)


def store_raw_backup(volume_name: str, raw: bytes, *, compression: str = "zstd"):
    """A backup row + archive in storage from the bytes of a tar stream, with its true checksum."""
    import hashlib

    import zstandard
    from django.utils import timezone

    from backups.models import Backup
    from backups.storage import get_storage

    packed = zstandard.ZstdCompressor().compress(raw) if compression == "zstd" else __import__("gzip").compress(raw)
    key = (f"{volume_name}/{volume_name}-crafted-{os.getpid()}-{hashlib.sha256(raw).hexdigest()[:12]}"
           f".tar.{'zst' if compression == 'zstd' else 'gz'}")
    storage = get_storage()
    with storage.open_temp_writer(key) as w:
        w.write(packed)
        w.commit()
    sha = hashlib.sha256(packed).hexdigest()
    from volumes.models import Volume

    return Backup.objects.create(
        job=found_job(key), volume=Volume.objects.filter(name=volume_name).first(), volume_name=volume_name,
        origin="imported", compression=compression, key=key, location=storage.location(key), sha256=sha,
        size_bytes=len(packed), bytes_read=len(raw), manifest={"archive": {"sha256": sha}},
        started_at=timezone.now(),
    )


def found_job(target: str = "", *, status: str = "succeeded", kind: str = "backup_found", **fields):
    """An ended job for a row made by hand (a backup found in storage, a restore as a dead
    worker left it): its on_end counts as done, as the rescan's or the sweep's would be."""
    from django.utils import timezone

    from jobs.models import Job

    return Job.objects.create(kind=kind, target=target, status=status, finished_at=timezone.now(),
                              end_handled=True, **fields)


def member(name: str, *, kind=tarfile.REGTYPE, data: bytes | None = None, linkname: str = "", mode: int = 0o644,
           uid: int = 0, gid: int = 0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid = kind, linkname, mode, uid, gid
    info.mtime = 1_000_000_000
    if kind == tarfile.REGTYPE:
        data = data if data is not None else b"content of " + name.encode()
        info.size = len(data)
    elif kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info, data if kind == tarfile.REGTYPE else None


def store_zero_backup(volume_name: str, size: int):
    """A backup whose archive holds one big file of zeros (plus a marker): tiny in storage,
    slow to write into a volume (the engine writes every byte) — a wide window to kill a
    worker mid-write without making the engine read gigabytes first."""
    import hashlib

    import zstandard
    from django.utils import timezone

    import tarstream as archive
    from backups.models import Backup
    from backups.storage import get_storage
    from volumes.models import Volume

    def header(name, *, kind=tarfile.REGTYPE, size=0):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mtime = kind, size, 1_000_000_000
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        return info.tobuf(format=tarfile.PAX_FORMAT)

    storage = get_storage()
    key = f"{volume_name}/{volume_name}-zeros-{size}.tar.zst"
    chunk = bytes(1 << 20)
    with storage.open_temp_writer(key) as writer:
        sink = archive.HashingWriter(writer)
        comp = zstandard.ZstdCompressor(level=1).compressobj()
        tar_bytes = 0
        pieces = [header("data", kind=tarfile.DIRTYPE), header("data/marker", size=6), b"zeros\n".ljust(512, b"\0"),
                  header("data/zeros", size=size)]
        for piece in pieces:
            sink.write(comp.compress(piece))
            tar_bytes += len(piece)
        for _ in range(size // len(chunk)):
            sink.write(comp.compress(chunk))
        tail = bytes(size % len(chunk) + (-size % 512)) + bytes(1024)
        sink.write(comp.compress(tail))
        sink.write(comp.flush())
        tar_bytes += size + len(tail)
        writer.commit()
    sha = sink.hexdigest()
    return Backup.objects.create(
        job=found_job(key), volume=Volume.objects.filter(name=volume_name).first(), volume_name=volume_name,
        origin="imported", compression="zstd", key=key, location=storage.location(key), sha256=sha,
        size_bytes=sink.bytes_written, bytes_read=tar_bytes, file_count=2, manifest={"archive": {"sha256": sha}},
        started_at=timezone.now(),
    )
