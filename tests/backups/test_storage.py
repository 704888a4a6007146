"""Local storage: atomic writes, safe keys, manifests, temporary files of dead writers."""

import os

import pytest

from backups.storage import LocalStorage, StorageError, check_key, manifest_key


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "root")


def test_nothing_appears_under_the_final_name_before_commit(storage):
    with storage.open_temp_writer("vol/vol-1.tar.zst", token="abc") as writer:
        writer.write(b"x" * 1000)
        folder = storage.path("vol/vol-1.tar.zst").parent
        assert not storage.exists("vol/vol-1.tar.zst")
        assert [p.name for p in folder.iterdir()] == [".tmp-vol-1.tar.zst.abc.partial"]
        writer.commit()

    assert storage.path("vol/vol-1.tar.zst").read_bytes() == b"x" * 1000
    assert [p.name for p in folder.iterdir()] == ["vol-1.tar.zst"]


def test_leaving_the_block_without_commit_removes_the_temporary_file(storage):
    with pytest.raises(RuntimeError):
        with storage.open_temp_writer("vol/a.tar.zst", token="t1") as writer:
            writer.write(b"partial")
            raise RuntimeError("stream broke")

    assert list(storage.path("vol/a.tar.zst").parent.iterdir()) == []


def test_commit_refuses_to_overwrite_an_existing_archive(storage):
    storage.write_json("vol/a.json", {"n": 1})

    with pytest.raises(StorageError, match="already exists"):
        with storage.open_temp_writer("vol/a.json") as writer:
            writer.write(b"{}")
            writer.commit()

    assert storage.read_json("vol/a.json") == {"n": 1}


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", "a//b", "", ".hidden/x", "a/b\x00", "vol/.tmp-x"])
def test_keys_that_are_not_plain_relative_paths_are_refused(storage, key):
    with pytest.raises(StorageError):
        storage.path(key)


def test_check_key_accepts_what_cargohold_writes():
    assert check_key("my_vol.1/my_vol.1-20240501T102030Z.tar.zst.manifest.json")


def test_manifests_are_listed_with_their_archive_and_temporary_files_are_not(storage):
    for key in ("a/a-1.tar.zst", "b/b-1.tar.gz"):
        with storage.open_temp_writer(key) as w:
            w.write(b"data")
            w.commit()
        storage.write_json(manifest_key(key), {"k": key})
    leftover = storage.open_temp_writer("c/c-1.tar.zst", token="dead")
    leftover.write(b"half")

    assert sorted(storage.list_manifests()) == [
        ("a/a-1.tar.zst.manifest.json", "a/a-1.tar.zst"),
        ("b/b-1.tar.gz.manifest.json", "b/b-1.tar.gz"),
    ]
    assert "c/c-1.tar.zst" not in list(storage.list_keys())


def test_remove_temp_files_removes_only_dead_writers(storage):
    alive = storage.open_temp_writer("v/v-1.tar.zst", token="alive")
    dead = storage.open_temp_writer("v/v-2.tar.zst", token="dead")

    removed = storage.remove_temp_files(is_dead=lambda token, age: token == "dead")

    assert removed == [str(dead.temp)]
    assert alive.temp.exists() and not dead.temp.exists()


def test_delete_removes_the_file_and_the_empty_volume_folder(storage):
    with storage.open_temp_writer("v/v-1.tar.zst") as w:
        w.write(b"1")
        w.commit()

    assert storage.delete("v/v-1.tar.zst") is True
    assert storage.delete("v/v-1.tar.zst") is False
    assert not storage.path("v/x").parent.exists()


def test_read_json_refuses_what_is_not_a_json_object(storage):
    with storage.open_temp_writer("v/m.json") as w:
        w.write(b"[1, 2]")
        w.commit()

    with pytest.raises(StorageError, match="not a JSON object"):
        storage.read_json("v/m.json")


def test_a_missing_archive_is_reported_by_name(storage):
    with pytest.raises(StorageError, match="missing"):
        storage.open_reader("v/nothing.tar.zst")


def test_files_are_not_world_readable(storage):
    with storage.open_temp_writer("v/v-1.tar.zst") as w:
        w.write(b"secret data")
        w.commit()
    assert os.stat(storage.path("v/v-1.tar.zst")).st_mode & 0o007 == 0


@pytest.mark.django_db
def test_a_repository_folder_that_is_gone_is_an_error_not_an_empty_listing(tmp_path):
    # An unmounted disk must not make every backup in it look deleted (rescan, retention).
    from repositories.models import Repository
    from backups.storage import StorageError, storage_for

    repo = Repository.objects.create(name="usb", url=str(tmp_path / "usb"), format="archive")
    with pytest.raises(StorageError, match="not there"):
        list(storage_for(repo).list_keys())
    (tmp_path / "usb").mkdir()
    assert list(storage_for(repo).list_keys()) == []
