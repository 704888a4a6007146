"""S3 storage of archives (backups.s3.S3Storage) against a real S3 server: SeaweedFS,
started by the `s3_server` / `s3` fixtures (tests/s3server.py)."""

from __future__ import annotations

import hashlib
import random
import tracemalloc

import pytest

from backups.s3 import MiB, S3Storage
from backups.storage import LocalStorage, StorageError, storage_for

PART = 5 * MiB  # S3's smallest part: multi-part objects stay small in tests


def pattern(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def chunks(data: bytes, size: int = MiB):
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start:start + size]


def stored(storage: S3Storage, key: str) -> bytes:
    with storage.open_reader(key) as f:
        out = bytearray()
        while chunk := f.read(MiB):
            out += chunk
    return bytes(out)


def unfinished(storage: S3Storage) -> list[str]:
    return [u["Key"] for u in storage.uploads()]


def raw_keys(s3_server, bucket: str) -> list[str]:
    """Every object in the bucket, markers included (what the server really holds)."""
    page = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in page.get("Contents", []))


# --- writing ------------------------------------------------------------------------------


def test_a_multi_part_archive_round_trips_holding_at_most_two_parts(s3_server):
    storage = s3_server.storage(part_size=PART)
    data = pattern(4 * PART + 123_456)  # five parts, the last one short
    key = "vol/vol-20240501T102030Z.tar.zst"

    tracemalloc.start()
    try:
        with storage.open_temp_writer(key, token="a" * 32) as writer:
            for chunk in chunks(data):
                writer.write(chunk)
            writer.commit()
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert writer.upload_id is not None and len(writer._parts) == 5
    # The buffer itself: the part being filled plus at most the one being sent.
    assert PART <= writer.peak_buffered <= 2 * PART
    # Everything Python allocated meanwhile (boto's copies included) stays near that.
    assert traced_peak < 3 * PART, f"{traced_peak / MiB:.1f} MiB traced for {len(data) / MiB:.1f} MiB written"
    assert stored(storage, key) == data
    assert storage.sha256(key) == hashlib.sha256(data).hexdigest()
    assert storage.stat(key).size == len(data)
    assert list(storage.list_keys()) == [key]
    assert unfinished(storage) == [] and raw_keys(s3_server, storage.bucket) == [key]  # no marker left


def test_parts_grow_after_each_thousand_so_10000_parts_reach_hundreds_of_gib(s3_server):
    storage = s3_server.storage(part_size=PART)
    writer = storage.open_temp_writer("vol/big.tar.zst", token="g" * 32)
    try:
        sizes = {}
        for done in (0, 999, 1000, 2500, 9999):
            writer._parts = [{"PartNumber": n + 1} for n in range(done)]
            sizes[done] = writer.part_size()
    finally:
        writer._parts = []
        writer.abort()
    assert sizes == {0: PART, 999: PART, 1000: 2 * PART, 2500: 3 * PART, 9999: 10 * PART}
    assert sum(PART * (1 + n // 1000) for n in range(10_000)) == 55_000 * PART  # 430 GiB of 8 MiB parts


def test_an_archive_smaller_than_a_part_goes_up_in_one_put(s3_server):
    storage = s3_server.storage(part_size=PART)

    storage.write_json("vol/a.tar.zst.manifest.json", {"format": "cargohold-backup"}, token="b" * 32)

    assert storage.read_json("vol/a.tar.zst.manifest.json") == {"format": "cargohold-backup"}
    assert unfinished(storage) == [] and raw_keys(s3_server, storage.bucket) == ["vol/a.tar.zst.manifest.json"]


def test_an_empty_archive_is_stored_empty(s3_server):
    storage = s3_server.storage(part_size=PART)

    with storage.open_temp_writer("vol/empty.tar") as writer:
        writer.commit()

    assert storage.exists("vol/empty.tar") and storage.stat("vol/empty.tar").size == 0
    assert stored(storage, "vol/empty.tar") == b""


@pytest.mark.parametrize("size", [100, 2 * PART + 1], ids=["one put", "multipart"])
def test_commit_refuses_to_overwrite_an_existing_key(s3_server, size):
    storage = s3_server.storage(part_size=PART)
    key = "vol/taken.tar.zst"
    s3_server.client().put_object(Bucket=storage.bucket, Key=key, Body=b"the first archive")

    with pytest.raises(StorageError, match="already exists; refusing to overwrite it"):
        with storage.open_temp_writer(key, token="c" * 32) as writer:
            writer.write(pattern(size))
            writer.commit()

    assert stored(storage, key) == b"the first archive"
    assert unfinished(storage) == [] and raw_keys(s3_server, storage.bucket) == [key]


def test_an_aborted_upload_leaves_nothing_listed(s3_server):
    storage = s3_server.storage(part_size=PART)
    key = "vol/cancelled.tar.zst"

    with pytest.raises(RuntimeError):
        with storage.open_temp_writer(key, token="d" * 32) as writer:
            for chunk in chunks(pattern(2 * PART + 10)):
                writer.write(chunk)
            assert writer.upload_id is not None and unfinished(storage) == [key]
            raise RuntimeError("cancelled")

    assert not storage.exists(key) and list(storage.list_keys()) == []
    assert unfinished(storage) == [] and raw_keys(s3_server, storage.bucket) == []


def test_remove_temp_files_aborts_only_the_uploads_of_dead_writers(s3_server):
    storage = s3_server.storage(part_size=PART, prefix="team/archives")
    writers = {}
    for token in ("dead", "alive"):
        writer = storage.open_temp_writer(f"vol/{token}.tar.zst", token=token)
        for chunk in chunks(pattern(PART + 1)):
            writer.write(chunk)
        writer._wait_pending()  # a crash now: the upload stays unfinished
        writers[token] = writer
    # An upload whose writer died before making its marker: judged by age alone.
    s3_server.client().create_multipart_upload(Bucket=storage.bucket, Key="team/archives/vol/orphan.tar.zst")
    asked = []

    def is_dead(token, age):
        asked.append(token)
        return token == "dead"

    removed = storage.remove_temp_files(is_dead=is_dead)

    assert removed == [f"s3:{s3_server.endpoint}/{storage.bucket}/team/archives/vol/dead.tar.zst (unfinished upload)"]
    assert sorted(asked) == ["", "alive", "dead"]
    assert sorted(unfinished(storage)) == ["team/archives/vol/alive.tar.zst", "team/archives/vol/orphan.tar.zst"]
    assert list(storage.list_keys()) == []  # neither uploads nor markers are archives

    removed = storage.remove_temp_files(is_dead=lambda token, age: True)

    assert len(removed) == 2 and unfinished(storage) == [] and raw_keys(s3_server, storage.bucket) == []
    for writer in writers.values():
        writer._close_pool()


# --- reading ------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def any_storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "backups")
    return request.getfixturevalue("s3_server").storage(part_size=PART)


def test_a_ranged_read_returns_exactly_those_bytes(any_storage):
    data = pattern(PART + 4096, seed=7)
    with any_storage.open_temp_writer("vol/ranged.tar") as writer:
        writer.write(data)
        writer.commit()

    for start, length in [(0, 10), (PART - 5, 10), (1234, 1), (len(data) - 3, 3), (17, 0), (len(data) + 9, 5)]:
        with any_storage.open_range("vol/ranged.tar", start, length) as f:
            got = f.read()
        assert got == data[start:start + length], (start, length)
    with any_storage.open_range("vol/ranged.tar", PART, 100_000) as f:  # past the end: what there is
        assert f.read() == data[PART:]
    with any_storage.open_range("vol/ranged.tar", 100, 3 * MiB) as f:  # read in chunks
        parts = []
        while chunk := f.read(MiB // 2):
            parts.append(chunk)
    assert b"".join(parts) == data[100:100 + 3 * MiB] and max(map(len, parts)) <= MiB // 2


def test_a_missing_archive_is_missing_from_storage(any_storage):
    for read in (lambda: any_storage.open_reader("vol/none.tar"), lambda: any_storage.open_range("vol/none.tar", 0, 5),
                 lambda: any_storage.stat("vol/none.tar")):
        with pytest.raises(StorageError, match="is missing from storage"):
            read()
    assert not any_storage.exists("vol/none.tar") and any_storage.delete("vol/none.tar") is False


def test_keys_live_under_the_prefix_and_locations_name_them(s3_server):
    storage = s3_server.storage(prefix="site-a/cargohold")
    storage.write_json("vol/x.tar.zst.manifest.json", {"a": 1})

    assert raw_keys(s3_server, storage.bucket) == ["site-a/cargohold/vol/x.tar.zst.manifest.json"]
    assert list(storage.list_keys()) == ["vol/x.tar.zst.manifest.json"]
    assert list(storage.list_manifests()) == [("vol/x.tar.zst.manifest.json", "vol/x.tar.zst")]
    assert storage.location("vol/x.tar.zst") == (
        f"s3:{s3_server.endpoint}/{storage.bucket}/site-a/cargohold/vol/x.tar.zst")
    assert storage.delete("vol/x.tar.zst.manifest.json") is True and raw_keys(s3_server, storage.bucket) == []


@pytest.mark.django_db
def test_storage_for_an_s3_archive_repository_uses_its_bucket_prefix_and_keys(s3_server):
    repo = s3_server.make_repository(prefix="backups")

    storage = storage_for(repo)
    storage.write_json("vol/m.manifest.json", {"ok": True})

    assert isinstance(storage, S3Storage) and storage.repository_name == repo.name
    assert storage.location("vol/m.manifest.json") == f"{repo.url}/vol/m.manifest.json"
    assert raw_keys(s3_server, repo.location.bucket) == ["backups/vol/m.manifest.json"]


# --- errors a person can act on -------------------------------------------------------------


def test_a_wrong_secret_is_refused_with_words_that_say_so(s3_server):
    bucket = s3_server.make_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="vol/a.tar", Body=b"x")
    wrong = "wrong-secret-" + "9" * 20
    storage = s3_server.storage(bucket=bucket, secret_access_key=wrong, repository_name="offsite")

    for call in (lambda: storage.open_temp_writer("vol/b.tar"), lambda: list(storage.list_keys()),
                 lambda: storage.open_reader("vol/a.tar"), lambda: storage.exists("vol/a.tar")):
        with pytest.raises(StorageError) as caught:
            call()
        message = str(caught.value)
        assert f"The S3 server at {s3_server.endpoint} refused the access key" in message
        assert "check the key id and secret of repository offsite" in message
        assert wrong not in message and s3_server.secret_key not in message and s3_server.access_key not in message


def test_an_unknown_access_key_is_refused_too(s3_server):
    storage = s3_server.storage(access_key_id="NO-SUCH-KEY-ID", secret_access_key="whatever-secret")

    with pytest.raises(StorageError, match="refused the access key .*InvalidAccessKeyId.*check the key id and secret"):
        list(storage.list_keys())


def test_no_keys_at_all_say_so_and_never_borrow_the_workers_own_credentials(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)  # ambient credentials must not be used
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    storage = s3_server.storage(access_key_id="", secret_access_key="", repository_name="offsite")

    with pytest.raises(StorageError, match="No S3 access key is set for repository offsite: enter the key id and secret"):
        list(storage.list_keys())


def test_a_bucket_that_does_not_exist_is_named_and_never_created(s3_server):
    storage = s3_server.storage(bucket="no-such-bucket-here")
    expected = f"The bucket no-such-bucket-here does not exist at {s3_server.endpoint}: create it, or fix the URL"

    for call in (lambda: storage.open_temp_writer("vol/a.tar"), lambda: list(storage.list_keys()),
                 lambda: storage.open_reader("vol/a.tar"), lambda: storage.write_json("vol/m.json", {})):
        with pytest.raises(StorageError, match=expected):
            call()
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert "no-such-bucket-here" not in names


def test_the_server_killed_mid_upload_fails_clearly_and_a_later_upload_succeeds(s3):
    storage = s3.storage(part_size=PART, max_attempts=2, connect_timeout=2)
    key = "vol/interrupted.tar.zst"
    data = pattern(3 * PART)

    with pytest.raises(StorageError) as caught:
        with storage.open_temp_writer(key, token="e" * 32) as writer:
            feed = chunks(data)
            while writer.upload_id is None or not writer._parts:
                writer.write(next(feed))
            s3.kill()  # for real, while a part may be on its way
            for chunk in feed:
                writer.write(chunk)
            writer.commit()

    message = str(caught.value)
    assert f"Lost the connection to the S3 server at {s3.endpoint} while uploading {key}" in message
    assert "nothing was stored" in message and s3.secret_key not in message
    s3.start()
    assert not storage.exists(key) and list(storage.list_keys()) == []
    assert unfinished(storage) == [key]  # the abort could not reach the dead server...
    assert storage.remove_temp_files(is_dead=lambda token, age: token == "e" * 32)  # ...the recovery step does
    assert unfinished(storage) == [] and raw_keys(s3, storage.bucket) == []

    with storage.open_temp_writer(key, token="f" * 32) as writer:
        for chunk in chunks(data):
            writer.write(chunk)
        writer.commit()
    assert storage.sha256(key) == hashlib.sha256(data).hexdigest()


def test_a_dead_server_fails_a_read_with_words_that_say_so(s3):
    storage = s3.storage(max_attempts=1, connect_timeout=2)
    s3.kill()

    with pytest.raises(StorageError, match=f"Could not reach the S3 server at {s3.endpoint} while listing the bucket"):
        list(storage.list_keys())


@pytest.mark.django_db
def test_the_recovery_sweep_aborts_the_s3_uploads_of_ended_backups_only(s3_server):
    from backups.recovery import backups_recover
    from tests.backups.conftest import backup_row

    repo = s3_server.make_repository()
    storage = storage_for(repo)
    storage.part_size = PART
    crashed = backup_row(volume_name="vol", status="failed", repository=repo)
    running = backup_row(volume_name="vol", status="running", repository=repo)
    writers = []
    for backup in (crashed, running):
        writer = storage.open_temp_writer(f"vol/{backup.uid.hex}.tar.zst", token=backup.uid.hex)
        writer.write(pattern(PART + 1))
        writer._wait_pending()  # the worker dies here
        writers.append(writer)

    report = backups_recover()

    assert f"s3:{s3_server.endpoint}/{repo.location.bucket}/vol/{crashed.uid.hex}.tar.zst (unfinished upload)" in (
        report["temp_removed"])
    assert unfinished(storage) == [f"vol/{running.uid.hex}.tar.zst"]
    for writer in writers:
        writer._close_pool()
