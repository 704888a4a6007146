"""A restore's check and write are two steps, each with its own bar; stopping and starting
containers are steps without a bar (not 100 %). Real handler, real engine, in this process."""

import pytest

from jobs.runner import JobContext
from restores import services
from tests import dockercli
from tests.restores.conftest import run_backup_now, run_restore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]


@pytest.fixture
def said(monkeypatch):
    """What the job card would show at each message: (message, done, total)."""
    seen: list[tuple[str, int, int | None]] = []
    real_say = JobContext.say

    def spy(self, message):
        real_say(self, message)
        if self.parent is None:
            seen.append((self.message, self.done, self.total))

    monkeypatch.setattr(JobContext, "say", spy)
    return seen


def test_a_restore_into_a_new_volume_is_step_1_check_then_step_2_write(no_enqueue, backup_root, make_volume,
                                                                          make_user, said, settings):
    settings.DATA_PATH = "engine"  # the two-pass restore (with the data helper: one step, below)
    source = make_volume("head -c 300000 /dev/urandom > /data/blob.bin")
    backup = run_backup_now(source)
    said.clear()
    restore = run_restore(services.restore_new_start(backup=backup, volume_name=dockercli.unique_name("copy"),
                                                     user=make_user("Operator")))
    assert restore.status == "succeeded", restore.error
    messages = [m for m, _, _ in said]
    check = next(s for s in said if s[0].startswith("Step 1 of 2: Checking the archive"))
    write = next(s for s in said if s[0].startswith("Step 2 of 2: Writing"))
    assert messages.index(check[0]) < messages.index(write[0])
    assert check[1:] == (0, backup.size_bytes)  # each step starts its own bar
    assert write[1:] == (0, restore.tar_bytes)


def test_with_the_data_helper_an_own_archive_is_checked_and_written_in_one_step_and_one_read(
        no_enqueue, backup_root, make_volume, make_user, said, settings):
    settings.DATA_PATH = "helper"
    source = make_volume("head -c 300000 /dev/urandom > /data/blob.bin")
    backup = run_backup_now(source)
    said.clear()
    restore = run_restore(services.restore_new_start(backup=backup, volume_name=dockercli.unique_name("copy"),
                                                     user=make_user("Operator")))
    assert restore.status == "succeeded", restore.error
    assert restore.job.result["single_pass"] is True and restore.job.result["data_path"] == "helper"
    steps = [s for s in said if s[0].startswith("Step ")]
    assert [s[0].split(":")[0] for s in steps] == ["Step 1 of 1"], steps
    assert steps[0][1:] == (0, backup.size_bytes)  # the bar counts the archive's bytes, read once
    assert restore.job.progress_done == backup.size_bytes
    assert restore.file_count == backup.file_count and restore.tar_bytes == backup.bytes_read


def test_stopping_and_starting_containers_are_steps_without_a_bar(no_enqueue, backup_root, make_volume, said):
    volume = make_volume("head -c 300000 /dev/urandom > /data/blob.bin")
    dockercli.run_container(f"{volume}:/data")
    run_backup_now(volume, stop_containers=True)
    stopping = [s for s in said if s[0].startswith("Stopping container")]
    starting = [s for s in said if s[0].startswith("Starting container")]
    assert stopping and starting
    assert all(total is None and done == 0 for _, done, total in stopping + starting)
