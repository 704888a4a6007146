"""Imports of archives made elsewhere (the usual recipes), then restores of them."""

import io
import tarfile

import pytest
import zstandard
from django.core.management import CommandError, call_command

from backups.models import Backup
from backups.storage import get_storage
from restores import services
from tests import dockercli
from tests.restores.conftest import FIDELITY_SCRIPT, listing, run_import, run_restore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


def recipe(volume: str, folder, command: str) -> None:
    """Run a backup recipe as people do: a throw-away container with the volume and a host folder."""
    dockercli.docker("run", "--rm", "--network", "none", "--label", dockercli.TEST_LABEL, "-v", f"{volume}:/data",
                     "-v", f"{folder}:/backup", dockercli.HELPER_IMAGE, "sh", "-c", command)


def test_the_usual_recipe_archive_imports_and_restores_exactly(no_enqueue, backup_root, make_volume, tmp_path,
                                                             capsys):
    source = make_volume(FIDELITY_SCRIPT)
    before = listing(source)
    recipe(source, tmp_path, "tar czf /backup/backup.tar.gz /data")

    call_command("import_archive", str(tmp_path / "backup.tar.gz"), "--volume-name", "from-recipe")

    backup = Backup.objects.get(pk=int(capsys.readouterr().out.strip()))
    assert (backup.origin, backup.status, backup.compression, backup.volume_name) == (
        "imported", "succeeded", "gzip", "from-recipe")
    assert backup.manifest["import"]["root"] == "data" and backup.manifest["origin"] == "imported"
    assert get_storage().read_json(backup.key + ".manifest.json")["archive"]["sha256"] == backup.sha256
    # Stored as uploaded: the file's own checksum is the backup's.
    assert backup.sha256 == backup.manifest["import"]["uploaded_sha256"]
    target = dockercli.unique_name("restored")
    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))
    assert restore.status == "succeeded", restore.error
    assert listing(target)["entries"] == before["entries"]


def test_an_archive_of_the_volume_root_imports_and_restores_exactly(no_enqueue, backup_root, make_volume, tmp_path):
    source = make_volume(FIDELITY_SCRIPT)
    before = listing(source)
    recipe(source, tmp_path, "tar -C /data -czf /backup/root.tgz .")

    backup = run_import(tmp_path / "root.tgz", "from-root")

    assert backup.status == "succeeded", backup.error
    assert backup.manifest["import"]["root"] == "dot"
    target = dockercli.unique_name("restored")
    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))
    assert restore.status == "succeeded" and restore.layout == "dot", restore.error
    assert listing(target)["entries"] == before["entries"]


def test_a_plain_tar_is_stored_compressed_and_a_zstd_one_as_it_is(no_enqueue, backup_root, make_volume, tmp_path):
    source = make_volume("mkdir /data/d && echo hi > /data/d/hi && ln -s hi /data/d/l")
    recipe(source, tmp_path, "tar cf /backup/plain.tar /data")
    plain = run_import(tmp_path / "plain.tar", "plain-one")
    assert (plain.status, plain.compression) == ("succeeded", "zstd")
    assert plain.key.endswith(".tar.zst") and plain.sha256 != plain.manifest["import"]["uploaded_sha256"]
    (tmp_path / "z.tar.zst").write_bytes(zstandard.ZstdCompressor().compress((tmp_path / "plain.tar").read_bytes()))
    zstd = run_import(tmp_path / "z.tar.zst", "zstd-one")
    assert (zstd.status, zstd.compression, zstd.file_count) == ("succeeded", "zstd", plain.file_count)
    for backup in (plain, zstd):
        target = dockercli.unique_name("restored")
        assert run_restore(services.restore_new_start(backup=backup, volume_name=target)).status == "succeeded"
        assert listing(target)["entries"] == listing(source)["entries"]


def test_a_hostile_archive_is_refused_naming_the_member_and_leaves_nothing(no_enqueue, backup_root, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("data", "data/ok.txt", "data/../../etc/cron.d/evil"):
            info = tarfile.TarInfo(name)
            if name == "data":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = 3
                tf.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "evil.tar.gz").write_bytes(buf.getvalue())

    with pytest.raises(CommandError, match=r"'data/\.\./\.\./etc/cron\.d/evil' contains a '\.\.' component"):
        call_command("import_archive", str(tmp_path / "evil.tar.gz"))

    backup = Backup.objects.get()
    assert backup.status == "failed" and backup.volume_name == "evil"
    storage = get_storage()
    assert list(storage.list_keys()) == [] and list(storage.temp_files()) == []


def test_a_file_that_is_no_archive_is_refused_with_the_reason(no_enqueue, backup_root, tmp_path):
    (tmp_path / "notes.tar.gz").write_bytes(b"BZh91AY&SY" + bytes(1000))
    with pytest.raises(CommandError, match="This is a bzip2 file"):
        call_command("import_archive", str(tmp_path / "notes.tar.gz"))
    assert not Backup.objects.exists()
