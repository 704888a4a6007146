"""Restores from restic snapshots: into a new volume byte-exact, selected paths, in place."""

import pytest

from restores import services
from tests import dockercli
from tests.backups.fidelity import fill_rich, mountpoint, snapshot
from tests.repositories.restic_fixtures import backup_now
from tests.restores.conftest import run_restore

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_restore_into_a_new_volume_gives_back_every_byte_owner_link_and_xattr(
        no_enqueue, restic_repo, make_volume, make_user):
    repo = restic_repo()
    source = make_volume("true")
    fill_rich(mountpoint(source))
    original = snapshot(mountpoint(source))
    backup = backup_now(source, repo)
    assert backup.status == "succeeded", backup.error
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target, user=make_user("Operator")))

    assert restore.status == "succeeded", restore.error
    assert restore.job.result["data_path"] == "restic"
    restored = snapshot(mountpoint(target))
    for facts in (restored, original):  # restic 0.14 writes holes as zeros (no --sparse before 0.15)
        for entry in facts.values():
            entry.pop("sparse", None)
    assert restored == original


def test_a_restore_of_selected_paths_brings_back_only_those(no_enqueue, restic_repo, make_volume, make_user):
    repo = restic_repo()
    source = make_volume("mkdir -p /data/keep /data/skip && echo a > /data/keep/a.txt && echo b > /data/skip/b.txt "
                         "&& echo c > /data/top.txt && echo 'x*' > '/data/odd [name]*.txt'")
    backup = backup_now(source, repo)
    assert backup.status == "succeeded", backup.error
    target = dockercli.unique_name("partial")
    restore = services.restore_new_start(backup=backup, volume_name=target, user=make_user("Operator"))
    restore.paths = ["keep", "odd [name]*.txt"]
    restore.save(update_fields=["paths"])

    restore = run_restore(restore)

    assert restore.status == "succeeded", restore.error
    root = mountpoint(target)
    assert (root / "keep" / "a.txt").read_text() == "a\n"
    assert (root / "odd [name]*.txt").read_text() == "x*\n"
    assert not (root / "skip").exists() and not (root / "top.txt").exists()


def test_a_restore_in_place_puts_the_snapshot_back_after_a_safety_backup(
        no_enqueue, restic_repo, make_volume, make_user, backup_root):
    repo = restic_repo()
    name = make_volume("echo before > /data/file.txt")
    backup = backup_now(name, repo)
    assert backup.status == "succeeded", backup.error
    dockercli.fill_volume(name, "echo after > /data/file.txt && echo new > /data/added.txt")

    restore = run_restore(services.restore_in_place_start(backup=backup, confirm_name=name,
                                                          user=make_user("Admin")))

    assert restore.status == "succeeded", restore.error
    root = mountpoint(name)
    assert (root / "file.txt").read_text() == "before\n"
    assert not (root / "added.txt").exists()
    assert restore.safety_backup.status == "succeeded"


def test_a_snapshot_forgotten_behind_cargoholds_back_is_named_and_no_volume_is_created(
        no_enqueue, restic_repo, make_volume):
    from repositories import restic

    repo = restic_repo()
    backup = backup_now(make_volume("echo a > /data/a"), repo)
    assert backup.status == "succeeded", backup.error
    restic.restic_forget(repo, [backup.snapshot_id])  # as `restic forget` run by hand would
    target = dockercli.unique_name("restored")

    restore = run_restore(services.restore_new_start(backup=backup, volume_name=target))

    assert restore.status == "failed"
    assert "is not in" in restore.error and "any more" in restore.error and "No volume was created." in restore.error
    assert not dockercli.volume_exists(target)
