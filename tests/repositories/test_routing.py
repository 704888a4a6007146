"""Backups routed to repositories: a named folder repository receives the backup, restores
read from it, retention deletes from the right one, the catalogue rescan finds what is in
a second one, and a policy's copy lands verified in its second repository. Real engine,
real storage, jobs run by the real runner in this process (a worker process elsewhere)."""

import hashlib
from pathlib import Path

import pytest

from accounts.models import AuditEvent
from backups.models import Backup
from backups.storage import get_storage
from jobs.runner import job_perform
from repositories import services as repo_services
from repositories.models import Repository
from tests import dockercli
from tests.restores.conftest import listing, run_backup_now, run_restore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


@pytest.fixture(autouse=True)
def _run_here(no_enqueue):
    """These tests run each job themselves (run_backup_now, run_restore, job_perform): a
    session worker of this process must not take the same message meanwhile."""


@pytest.fixture
def backup_root(settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


@pytest.fixture
def make_volume():
    """A volume filled by a busybox script, known to the mirror."""
    from volumes.services import mirror_sync

    def make(script: str) -> str:
        name = dockercli.create_volume()
        dockercli.fill_volume(name, script)
        mirror_sync()
        return name

    return make


@pytest.fixture
def second(tmp_path, backup_root):
    """A second folder repository (archives), not the default."""
    return repo_services.repository_create(name="second", url=str(tmp_path / "second"), actor_name="test").repository


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_backup_to_a_named_repository_lands_in_its_folder_and_restores_from_it(make_volume, second, backup_root):
    from restores import services as restore_services

    source = make_volume("mkdir /data/d && echo routed > /data/d/a.txt && head -c 50000 /dev/urandom > /data/b")
    before = listing(source)
    backup = run_backup_now(source, repository=second)

    assert backup.repository == second
    stored = Path(second.url) / backup.key
    assert stored.is_file() and sha256_of(stored) == backup.sha256
    assert (Path(second.url) / (backup.key + ".manifest.json")).is_file()
    assert backup.location == str(stored)
    assert not list(Path(backup_root).rglob("*.tar.zst"))  # nothing went to the built-in folder

    target = dockercli.unique_name("restored")
    restore = run_restore(restore_services.restore_new_start(backup=backup, volume_name=target))
    assert restore.status == "succeeded", restore.job.error
    assert listing(target)["entries"] == before["entries"]


def test_verify_and_delete_use_the_backups_own_repository(make_volume, second, backup_root):
    from backups import worker

    backup = run_backup_now(make_volume("echo v > /data/v"), repository=second)
    assert worker.backup_verify(backup=backup).ok
    stored = Path(second.url) / backup.key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    assert not worker.backup_verify(backup=backup).ok  # it read the second folder's copy, not another

    worker.backup_delete(backup=backup)
    assert not stored.exists() and not Path(str(stored) + ".manifest.json").exists()


def test_the_default_repository_is_used_when_none_is_named(make_volume, second, backup_root):
    repo_services.repository_make_default(repository=second)
    backup = run_backup_now(make_volume("echo d > /data/d"))
    assert backup.repository == second and (Path(second.url) / backup.key).is_file()


def test_rescan_finds_backups_in_a_second_repository_and_flags_missing_ones(make_volume, second, backup_root):
    from backups.catalogue import backups_rescan

    name = make_volume("echo r > /data/r")
    in_second = run_backup_now(name, repository=second)
    in_local = run_backup_now(name)
    uid, key = in_second.uid, in_second.key
    Backup.objects.filter(pk__in=[in_second.pk]).delete()  # the database lost it; the folder has it

    report = backups_rescan()
    found = Backup.objects.get(uid=uid)
    assert found.pk in report["added"] and found.repository == second and found.key == key
    assert found.status == "succeeded" and found.location == str(Path(second.url) / key)
    assert in_local.pk not in report["missing"] and report["unreachable"] == []

    (Path(second.url) / key).unlink()
    (Path(second.url) / (key + ".manifest.json")).unlink()
    report = backups_rescan()
    assert found.pk in report["missing"] and in_local.pk not in report["missing"]
    assert Backup.objects.get(pk=found.pk).missing and not Backup.objects.get(pk=in_local.pk).missing


def test_an_unreachable_repository_is_reported_and_its_backups_are_not_flagged(make_volume, second, backup_root,
                                                                                  monkeypatch):
    from backups import storage as storage_module
    from backups.catalogue import backups_rescan

    backup = run_backup_now(make_volume("echo u > /data/u"), repository=second)
    real = storage_module.LocalStorage.list_keys

    def broken(self, prefix=""):
        if str(self.root) == second.url:
            raise storage_module.StorageError("Input/output error")
        return real(self, prefix)

    monkeypatch.setattr(storage_module.LocalStorage, "list_keys", broken)
    report = backups_rescan()
    assert any(line.startswith("second:") for line in report["unreachable"])
    assert not Backup.objects.get(pk=backup.pk).missing


def _policy(volume: str, **fields):
    from policies import services
    from policies.models import BackupPolicy

    policy = BackupPolicy(name=f"p-{volume[-6:]}", selector_kind="names", selector_value=volume, cron="0 2 * * *",
                          **fields)
    return services.policy_save(policy=policy)


def _run(policy):
    """One run of the policy, its backup performed here; its end moves the run on
    (job_ended: verify, prune, copy) as in a worker."""
    from unittest import mock

    from policies import services
    from policies.models import PolicyRun

    with mock.patch("jobs.services.job_enqueue"):
        [run] = services.policy_run_now(policy=policy)
        job_perform(run.job_id)
    return PolicyRun.objects.get(pk=run.pk)


def test_retention_deletes_from_the_right_repository(make_volume, second, backup_root):
    name = make_volume("echo k > /data/k")
    manual_local = run_backup_now(name)
    policy = _policy(name, keep_last=1, repository=second)
    first = _run(policy)
    first_key = Backup.objects.get(pk=first.backup_ref).key
    assert (Path(second.url) / first_key).is_file()
    second_run = _run(policy)
    assert first.backup_ref != second_run.backup_ref

    kept = Backup.objects.get(pk=second_run.backup_ref)
    assert kept.repository == second and (Path(second.url) / kept.key).is_file()
    assert not Backup.objects.filter(pk=first.backup_ref).exists()  # pruned in the second folder
    assert not (Path(second.url) / first_key).exists()
    assert not (Path(second.url) / (first_key + ".manifest.json")).exists()
    assert get_storage().exists(manual_local.key)  # the built-in folder's backup is untouched
    assert AuditEvent.objects.filter(action="retention_delete", object_name=str(first.backup_ref)).exists()


def test_a_listing_failure_in_one_repository_deletes_nothing_there(make_volume, second, backup_root, monkeypatch):
    from backups import storage as storage_module

    name = make_volume("echo f > /data/f")
    policy = _policy(name, keep_last=1, repository=second)
    first = _run(policy)
    real = storage_module.LocalStorage.list_keys

    def broken(self, prefix=""):
        if str(self.root) == second.url:
            raise storage_module.StorageError("The folder is not mounted (Input/output error).")
        return real(self, prefix)

    monkeypatch.setattr(storage_module.LocalStorage, "list_keys", broken)
    last = _run(policy)
    assert Backup.objects.filter(pk=first.backup_ref).exists()
    last.refresh_from_db()
    assert last.prune_state == "failed" and "could not be listed" in last.prune_message


def test_a_policy_copy_creates_a_verified_copy_in_the_second_repository(make_volume, second, backup_root):
    name = make_volume("mkdir /data/c && head -c 200000 /dev/urandom > /data/c/blob && echo c > /data/c/t")
    policy = _policy(name, keep_last=3, copy_to=second)
    run = _run(policy)
    assert run.status == "succeeded", run.message
    original = Backup.objects.get(pk=run.backup_ref)
    assert original.repository.builtin

    copy = Backup.objects.get(copy_of=original)
    assert copy.repository == second and copy.status == "queued"
    job_perform(copy.job_id)
    copy.refresh_from_db()
    assert copy.status == "succeeded", copy.error
    assert copy.sha256 == original.sha256 and copy.verified and copy.key == original.key
    stored = Path(second.url) / copy.key
    assert sha256_of(stored) == original.sha256
    assert (Path(second.url) / (copy.key + ".manifest.json")).is_file()
    assert copy.job.kind == "backup_copy" and copy.job.progress_done == original.size_bytes
    assert AuditEvent.objects.filter(action="backup_copy_finish", result="ok").exists()

    # The copy restores on its own.
    from restores import services as restore_services

    target = dockercli.unique_name("fromcopy")
    restore = run_restore(restore_services.restore_new_start(backup=copy, volume_name=target))
    assert restore.status == "succeeded", restore.job.error
    assert listing(target)["entries"] == listing(name)["entries"]


def test_a_copy_whose_original_was_changed_in_storage_fails_and_leaves_nothing(make_volume, second, backup_root):
    name = make_volume("head -c 100000 /dev/urandom > /data/x")
    original = run_backup_now(name)
    path = get_storage().local_path(original.key)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    from unittest import mock

    with mock.patch("jobs.services.job_enqueue"):
        copy = repo_services.backup_copy_start(backup=original, repository=second)
    job_perform(copy.job_id)
    copy.refresh_from_db()
    assert copy.status == "failed" and "not the recorded" in copy.error
    folder = Path(second.url)
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


def test_copies_to_restic_repositories_are_refused_in_the_policy_form(backup_root, tmp_path):
    from policies.forms import PolicyForm

    restic_repo = Repository.objects.create(name="vault", format="restic", url=str(tmp_path / "vault"))
    form = PolicyForm(data={"name": "p", "selector_kind": "names", "selector_value": "x", "cron": "0 2 * * *",
                            "timezone": "UTC", "compression": "zstd", "keep_last": 1, "overdue_grace_minutes": 60,
                            "copy_to": restic_repo.name})
    assert not form.is_valid()
    assert "not supported yet" in " ".join(form.errors["copy_to"])


# --- S3 (a real SeaweedFS) -----------------------------------------------------------------


def test_a_copy_to_an_s3_repository_is_verified_and_found_again_by_a_rescan(make_volume, backup_root, s3):
    from unittest import mock

    from backups.catalogue import backups_rescan
    from backups.storage import storage_for

    offsite = s3.make_repository(name="offsite")
    original = run_backup_now(make_volume("head -c 300000 /dev/urandom > /data/s"))
    with mock.patch("jobs.services.job_enqueue"):
        copy = repo_services.backup_copy_start(backup=original, repository=offsite, trigger="user")
    job_perform(copy.job_id)
    copy.refresh_from_db()
    assert copy.status == "succeeded", copy.error
    assert copy.verified and copy.sha256 == original.sha256 and copy.location.startswith("s3:")
    bucket = storage_for(offsite)
    assert bucket.sha256(copy.key) == original.sha256 and bucket.exists(copy.key + ".manifest.json")

    Backup.objects.filter(pk=copy.pk).delete()
    report = backups_rescan()
    found = Backup.objects.get(repository=offsite)
    assert found.pk in report["added"] and found.copy_of == original and found.key == original.key
    assert report["unreachable"] == []


def test_a_backup_into_s3_is_pruned_there_by_retention(make_volume, backup_root, s3):
    from backups.storage import storage_for

    offsite = s3.make_repository(name="pruned")
    name = make_volume("echo p > /data/p")
    policy = _policy(name, keep_last=1, repository=offsite)
    first = _run(policy)
    first_key = Backup.objects.get(pk=first.backup_ref).key
    bucket = storage_for(offsite)
    assert bucket.exists(first_key)
    last = _run(policy)
    assert last.status == "succeeded", last.message
    assert not bucket.exists(first_key) and not Backup.objects.filter(pk=first.backup_ref).exists()
    assert bucket.exists(Backup.objects.get(pk=last.backup_ref).key)


def test_the_recovery_sweep_removes_dead_temporary_files_in_every_archive_repository(second, backup_root):
    import os
    import uuid

    from backups.recovery import backups_recover

    folder = Path(second.url) / "vol"
    folder.mkdir(parents=True)
    dead = folder / f".tmp-vol-x.tar.zst.{uuid.uuid4().hex}.partial"  # an unknown token, a day old
    dead.write_bytes(b"half")
    os.utime(dead, (0, 0))
    fresh = folder / f".tmp-vol-y.tar.zst.{uuid.uuid4().hex}.partial"
    fresh.write_bytes(b"someone writes")
    report = backups_recover()
    assert str(dead) in report["temp_removed"] and not dead.exists() and fresh.exists()


# --- restic (the restic adapter's snapshots) ---------------------------------------------


def test_rescan_records_the_snapshots_of_a_restic_repository(make_volume, backup_root, tmp_path):
    from backups.catalogue import backups_rescan
    from repositories import restic
    from tests.repositories.restic_fixtures import PASSWORD

    repo = Repository(name="vault", format="restic", url=str(tmp_path / "vault"))
    repo.set_secrets(password=PASSWORD)
    repo.save()
    restic.restic_init(repo)
    backup = run_backup_now(make_volume("echo snap > /data/s"), repository=repo)
    assert backup.snapshot_id
    uid, snapshot, volume = backup.uid, backup.snapshot_id, backup.volume_name
    Backup.objects.filter(pk=backup.pk).delete()

    report = backups_rescan()
    found = Backup.objects.get(repository=repo)
    assert found.pk in report["added"] and found.snapshot_id == snapshot and found.volume_name == volume
    assert found.uid == uid and found.status == "succeeded" and found.finished_at is not None
    assert report["unreachable"] == []
    assert backups_rescan()["added"] == []  # found once


def test_a_policys_copies_are_pruned_in_the_copy_repository_by_its_rules(make_volume, second, backup_root):
    name = make_volume("echo pc > /data/pc")
    policy = _policy(name, keep_last=1, copy_to=second)
    copies = []
    for _ in range(3):
        run = _run(policy)
        assert run.status == "succeeded", run.message
        copy = Backup.objects.get(copy_of_id=run.backup_ref)
        job_perform(copy.job_id)
        copy.refresh_from_db()
        assert copy.status == "succeeded", copy.error
        copies.append(copy)
    # Each run pruned both repositories on its own: one original left in local, and in the
    # copy repository the copies the rules no longer keep are gone (their originals first).
    assert Backup.objects.filter(volume_name=name, repository__builtin=True).count() == 1
    left = set(Backup.objects.filter(volume_name=name, repository=second).values_list("pk", flat=True))
    assert copies[0].pk not in left and copies[-1].pk in left
    # What is left in the folder is exactly the kept copies' archives (names may repeat
    # within a second: a pruned copy's name can be a later one's).
    archives = sorted(str(p.relative_to(second.url)) for p in Path(second.url).rglob("*.tar.zst"))
    assert archives == sorted(Backup.objects.filter(pk__in=left).values_list("key", flat=True))


def test_a_copy_never_overwrites_what_the_target_holds_under_the_same_name(make_volume, second, backup_root):
    from unittest import mock

    original = run_backup_now(make_volume("echo same > /data/same"))
    taken = Path(second.url) / original.key
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"another backup's archive")
    with mock.patch("jobs.services.job_enqueue"):
        copy = repo_services.backup_copy_start(backup=original, repository=second)
    job_perform(copy.job_id)
    copy.refresh_from_db()
    assert copy.status == "succeeded", copy.error
    assert copy.key != original.key and copy.key.endswith("-2.tar.zst")
    assert taken.read_bytes() == b"another backup's archive"
    assert sha256_of(Path(second.url) / copy.key) == original.sha256
    assert copy.manifest["archive"]["key"] == copy.key
