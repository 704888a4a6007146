"""The job card tells the truth about progress: an unknown total is an indeterminate bar
with what was done so far (never a still bar at some width), counts are counts, sizes are
in binary units, and a step says which step it is."""

import pytest
from django.template.loader import render_to_string

from jobs import kinds
from jobs.models import Job
from project.sizes import human_size

pytestmark = pytest.mark.django_db


def card(job: Job, kind_name: str | None = None) -> str:
    return render_to_string("jobs/_job.html", {"job": job, "kind": kinds.get(kind_name or job.kind)})


def test_sizes_read_in_binary_units():
    assert human_size(943_718_400) == "900 MiB"
    assert human_size(1536 * 1024 * 1024) == "1.5 GiB"
    assert human_size(1) == "1 byte" and human_size(1023) == "1023 bytes" and human_size(None) == ""


def test_an_unknown_total_is_an_indeterminate_bar_with_the_bytes_so_far():
    job = Job.objects.create(kind="backup", target="v", status=Job.Status.RUNNING,
                             progress_done=5 * 1024 * 1024, progress_total=None,
                             progress_message="Streaming the volume from the engine")
    html = card(job)
    assert 'data-progress="indeterminate"' in html
    assert "width: 30%" not in html and "style=\"width" not in html
    assert "5\xa0MiB so far" in html
    assert "Streaming the volume from the engine" in html


def test_more_done_than_the_total_is_no_bar_stuck_at_100_percent():
    job = Job.objects.create(kind="backup", target="v", status=Job.Status.RUNNING,
                             progress_done=1200 * 1024 * 1024, progress_total=900 * 1024 * 1024)
    html = card(job)
    assert 'data-progress="indeterminate"' in html and "1.2\xa0GiB so far" in html


def test_a_known_total_shows_its_percentage_in_binary_units():
    job = Job.objects.create(kind="backup", target="v", status=Job.Status.RUNNING,
                             progress_done=450 * 1024 * 1024, progress_total=900 * 1024 * 1024)
    html = card(job)
    assert 'data-progress="50"' in html
    assert "450\xa0MiB of 900\xa0MiB" in html and "bytes" not in html


def test_a_prune_counts_volumes_not_bytes():
    job = Job.objects.create(kind="volume_prune", target="(prune)", status=Job.Status.RUNNING,
                             progress_done=3, progress_total=10)
    html = card(job)
    assert "3 of 10 volumes" in html and "bytes" not in html


def test_a_step_begins_its_own_bar_and_names_itself():
    from jobs.runner import JobContext

    job = Job.objects.create(kind="restore", target="v", status=Job.Status.RUNNING)
    ctx = JobContext(job)
    ctx.step("Checking the archive", number=1, of=2, total=1000)
    ctx.advance(580)
    ctx.step("Writing 3 files into v", number=2, of=2, total=2000)
    assert (ctx.done, ctx.total, ctx.message) == (0, 2000, "Step 2 of 2: Writing 3 files into v")
    ctx.say("Checking that no other container used v")
    assert ctx.message == "Step 2 of 2: Checking that no other container used v"
    ctx.step("Starting container shop again")  # not measurable: no bar at 100 %
    assert (ctx.done, ctx.total, ctx.message) == (0, None, "Starting container shop again")
