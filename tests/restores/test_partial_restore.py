"""Restores of some files and folders of an archive backup: into a new volume only those
paths, exact (owners, modes, xattrs, ACLs, capabilities, links); in place only those
paths replaced, the rest of the volume untouched; bad paths refused before anything
starts; the CLI's --path and list_files."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.models import BackupEntry
from project.errors import Refused
from restores import services
from restores.models import Restore
from tests import dockercli
from tests.backups.fidelity import fill_rich, mountpoint, snapshot
from tests.restores.conftest import listing, run_backup_now, run_restore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

CHOSEN = (b"dir", b"capable", b"empty-dir")


def under(snap: dict, roots) -> dict:
    return {k: v for k, v in snap.items() if any(k == r or k.startswith(r + b"/") for r in roots)}


@pytest.fixture
def rich_backup(settings, no_enqueue, backup_root, make_volume):
    settings.BACKUP_FRAME_BYTES = 1 << 20  # engine path; the helper's pzstd makes 2 MiB frames at level 1
    settings.BACKUP_ZSTD_LEVEL = 1
    volume = make_volume("")
    root = mountpoint(volume)
    fill_rich(root)
    (root / "other").mkdir()
    (root / "other" / "state").write_bytes(b"old other\n")
    return volume, run_backup_now(volume)


@pytest.mark.parametrize("path", ["helper", "engine"])
def test_a_partial_restore_into_a_new_volume_holds_only_those_paths_exactly(path, settings, rich_backup, make_user):
    volume, backup = rich_backup
    settings.DATA_PATH = path
    target = dockercli.unique_name("partial")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target,
                                                     paths=["dir", "capable", "empty-dir/"]))

    assert restore.status == "succeeded", restore.error
    assert restore.paths == ["dir", "capable", "empty-dir"]
    assert restore.job.result["data_path"] == path
    original = snapshot(mountpoint(volume), extended=path == "helper")
    restored = snapshot(mountpoint(target), extended=path == "helper")
    assert set(restored) == set(under(original, CHOSEN))  # nothing else
    if path == "helper":
        assert restored == under(original, CHOSEN)  # owners, modes, xattrs, ACLs, capability, ns mtimes
        assert restored[b"dir/text.txt"]["xattrs"] and restored[b"capable"]["cap"]
    else:  # dockerd's writer keeps less (no xattrs, no ACLs): what it keeps must match
        keep = ("mode", "uid", "gid", "target", "sha", "links", "mtime")
        assert {k: {f: e[f] for f in keep if f in e} for k, e in restored.items()} == \
            {k: {f: e[f] for f in keep if f in e} for k, e in under(original, CHOSEN).items()}
    assert "partial" not in restore.outcome.lower() or "created" in restore.outcome


def test_a_partial_restore_in_place_replaces_only_those_paths(settings, rich_backup, make_user):
    volume, backup = rich_backup
    settings.DATA_PATH = "helper"
    before = listing(volume)["entries"]
    # After the backup: the chosen folder changes (a file edited, one added, one removed),
    # and so does something outside it.
    dockercli.fill_volume(volume, "echo changed > /data/dir/text.txt && echo extra > /data/dir/extra && "
                                  "rm /data/dir/sub/random.bin && echo new other > /data/other/state && "
                                  "echo kept > /data/new-file")
    changed = listing(volume)["entries"]
    admin = make_user("Admin")

    restore = run_restore(services.restore_in_place_start(backup=backup, confirm_name=volume, user=admin,
                                                          paths=["dir"]))

    assert restore.status == "succeeded", restore.error
    after = listing(volume)["entries"]
    inside = lambda name: name == "./dir" or name.startswith("./dir/")
    assert {k: v for k, v in after.items() if inside(k)} == {k: v for k, v in before.items() if inside(k)}
    assert "./dir/extra" not in after
    # The rest is as it was just before the restore (the root's times move: dir was rewritten).
    assert {k: v for k, v in after.items() if not inside(k) and k != "."} == \
        {k: v for k, v in changed.items() if not inside(k) and k != "."}
    assert after["./new-file"]["sha256"] and after["./other/state"] == changed["./other/state"]
    safety = restore.safety_backup
    assert safety.status == "succeeded" and restore.rollback_pending is False and restore.emptied_at is None
    assert BackupEntry.objects.filter(backup=safety, path="new-file").exists()


def test_a_failed_partial_write_in_place_puts_the_safety_backup_back(settings, rich_backup, make_user, monkeypatch):
    from backups import partial

    volume, backup = rich_backup
    settings.DATA_PATH = "helper"
    dockercli.fill_volume(volume, "echo after > /data/other/state")
    changed = listing(volume)["entries"]
    original = partial.member_tar_pieces

    def broken(*args, **kwargs):
        for i, piece in enumerate(original(*args, **kwargs)):
            if i == 3:
                raise partial.ArchiveError("The archive is damaged (test).")
            yield piece

    monkeypatch.setattr(partial, "member_tar_pieces", broken)
    restore = run_restore(services.restore_in_place_start(backup=backup, confirm_name=volume,
                                                          user=make_user("Admin"), paths=["dir"]))

    assert restore.status == "failed" and "damaged (test)" in restore.error
    assert restore.rolled_back_at is not None and restore.rollback_pending is False
    after = listing(volume)["entries"]
    assert {k: v for k, v in after.items() if k != "."} == {k: v for k, v in changed.items() if k != "."}


@pytest.mark.parametrize("paths, words", [
    (["/dir"], "absolute path"),
    (["dir/../etc"], '".."'),
    (["./dir"], '"."'),
    (["no/such/thing"], "does not hold 'no/such/thing'"),
    (["dir", "nope"], "does not hold 'nope'"),
    (["bad\nname"], "control characters"),
    ([f"f{i}" for i in range(1001)], "at most 1000"),
    (["/"], "absolute path"),
])
def test_bad_paths_are_refused_and_nothing_starts(rich_backup, paths, words):
    volume, backup = rich_backup
    with pytest.raises(Refused, match=words.replace("(", r"\(").replace("'", "'")):
        services.restore_new_start(backup=backup, volume_name=dockercli.unique_name("nope"), paths=paths)
    with pytest.raises(Refused):
        services.restore_in_place_start(backup=backup, confirm_name=volume, paths=paths)
    assert not Restore.objects.exists()


def test_a_backup_without_an_index_refuses_a_partial_restore(rich_backup):
    _, backup = rich_backup
    BackupEntry.objects.filter(backup=backup).delete()
    with pytest.raises(Refused, match="no file index"):
        services.restore_new_start(backup=backup, volume_name=dockercli.unique_name("nope"), paths=["dir"])
    assert not Restore.objects.exists()


def test_the_cli_restores_paths_and_lists_files(settings, rich_backup):
    volume, backup = rich_backup
    settings.DATA_PATH = "helper"
    target = dockercli.unique_name("cli")
    out = io.StringIO()

    call_command("restore_backup", str(backup.pk), "--to", target, "--path", "dir/sub", "--path", "other/state",
                 stdout=out)

    restore = Restore.objects.get(job_id=int(out.getvalue()))
    assert restore.paths == ["dir/sub", "other/state"]
    restore = run_restore(restore)
    assert restore.status == "succeeded", restore.error
    assert sorted(snapshot(mountpoint(target), extended=False)) == \
        [b"dir", b"dir/sub", b"dir/sub/random.bin", b"other", b"other/state"]
    with pytest.raises(CommandError, match="does not hold"):
        call_command("restore_backup", str(backup.pk), "--to", dockercli.unique_name("x"), "--path", "missing")

    out = io.StringIO()
    call_command("list_files", str(backup.pk), stdout=out)
    lines = out.getvalue().splitlines()
    names = [line.rsplit("  ", 1)[1] for line in lines]
    assert "dir/" in names and "capable" in names and "other/" in names
    assert any(line.startswith("-rwsr-xr-x") and line.endswith("capable") for line in lines)
    out = io.StringIO()
    call_command("list_files", str(backup.pk), "dir/sub", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert rows == [{"path": "dir/sub/random.bin", "name": "random.bin", "type": "file", "size": 200_000,
                     "mode": "0660", "uid": 1234, "gid": 4321, "mtime": rows[0]["mtime"], "link": None}]
    out = io.StringIO()
    call_command("list_files", str(backup.pk), "dir", "--recursive", stdout=out)
    assert any(line.endswith("dir/sub/random.bin") for line in out.getvalue().splitlines())
    with pytest.raises(CommandError, match="holds no"):
        call_command("list_files", str(backup.pk), "nope")
