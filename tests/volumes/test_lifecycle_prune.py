"""Prune against the real engine: preview from the mirror, each volume re-checked before removal.

Every prune here names only this test's own volumes: the engine is shared with other runs.
"""

import uuid
from datetime import timedelta

import pytest

from accounts.models import AuditEvent
from jobs.models import Job
from jobs.runner import JobContext
from jobs.locks import lock_acquire, volume_lock
from tests import dockercli
from tests.volumes.lifecycle import run_inline
from volumes import selectors, services, worker
from volumes.models import Volume

# transaction=True: the runner closes a connection left in a transaction, as a worker would.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine, pytest.mark.usefixtures("no_enqueue")]


def _anonymous(**kwargs) -> str:
    """A volume named like the engine names anonymous ones (64 hex digits), test-labelled."""
    return dockercli.create_volume(uuid.uuid4().hex + uuid.uuid4().hex, **kwargs)


def test_preview_lists_unused_anonymous_volumes_by_default_and_all_unused_with_the_checkbox():
    anon = _anonymous()
    named = dockercli.create_volume()
    used_anon = _anonymous()
    dockercli.run_container(f"{used_anon}:/data", start=False)  # a stopped (created) container counts
    protected = _anonymous(labels={"cargohold.protect": "true"})
    dockercli.fill_volume(anon, "dd if=/dev/zero of=/data/blob bs=1024 count=300 2>/dev/null")
    services.mirror_sync()
    services.sizes_refresh()

    default = selectors.prune_preview(include_named=False)
    wide = selectors.prune_preview(include_named=True)

    names = {v.name for v in default.volumes}
    assert anon in names and named not in names and used_anon not in names and protected not in names
    assert protected in {v.name for v in default.protected}
    assert {anon, named} <= {v.name for v in wide.volumes} and used_anon not in {v.name for v in wide.volumes}
    size = Volume.objects.get(name=anon).size_bytes
    assert size >= 300 * 1024
    assert default.total_bytes >= size


def test_prune_removes_the_confirmed_list_and_skips_what_changed_since_the_preview(client_for, monkeypatch):
    keep_going, became_used, vanished, protected = _anonymous(), _anonymous(), _anonymous(), _anonymous(
        labels={"cargohold.protect": "true"})
    dockercli.fill_volume(keep_going, "dd if=/dev/zero of=/data/blob bs=1024 count=200 2>/dev/null")
    services.mirror_sync()
    services.sizes_refresh()
    preview = selectors.prune_preview(include_named=False)
    mine = [v.name for v in preview.volumes if v.name in {keep_going, became_used, vanished}]
    assert sorted(mine) == sorted([keep_going, became_used, vanished])
    # The confirm POST carries exactly the list shown; a crafted one naming a protected volume
    # is checked by the worker like the rest.
    response = client_for("Admin").post("/volumes/prune/", {"volume": [*mine, protected]})
    job = Job.objects.get(kind="volume_prune")
    assert response.status_code == 302
    # Between the preview and the worker: a container starts using one, another goes away.
    user = dockercli.run_container(f"{became_used}:/data")
    dockercli.docker("volume", "rm", vanished)

    result, error = run_inline(job)

    assert error is None
    assert [r["name"] for r in result["removed"]] == [keep_going]
    reasons = {s["name"]: s["reason"] for s in result["skipped"]}
    assert reasons[became_used] == f"in use by {user} (running)"
    assert reasons[vanished] == "already gone from the engine"
    assert reasons[protected] == "protected (cargohold.protect=true)"
    assert not dockercli.volume_exists(keep_going)
    assert dockercli.volume_exists(became_used) and dockercli.volume_exists(protected)
    assert result["reclaimed_bytes"] >= 200 * 1024
    assert "Removed 1 volume, skipped 3" in result["message"]
    assert Volume.objects.get(name=keep_going).gone_since is not None
    prune_event = AuditEvent.objects.get(action="volume_prune")
    assert prune_event.result == "ok" and prune_event.params["removed"] == [keep_going]
    assert AuditEvent.objects.get(action="volume_remove", object_name=keep_going).params["via"] == "prune"


def test_the_engine_refuses_a_volume_a_container_took_after_the_workers_check(make_user):
    name = _anonymous()
    services.mirror_sync()
    job = services.volume_prune_start(names=[name], include_named=False, user=make_user("Admin"))
    container = dockercli.run_container(f"{name}:/data", start=False)

    reason = worker._prune_one(JobContext(job), name, users={})  # the worker's listing missed it

    assert reason == f"in use by {container} (created)"
    assert dockercli.volume_exists(name)


def test_a_volume_another_job_holds_is_skipped_as_busy(make_user):
    name = _anonymous()
    services.mirror_sync()
    job = services.volume_prune_start(names=[name], include_named=False, user=make_user("Admin"))
    lock_acquire(resource=volume_lock(name), owner="job 999 (backup) on elsewhere", ttl=timedelta(minutes=5))

    result, error = run_inline(job)

    assert error is None and result["removed"] == []
    assert "busy" in result["skipped"][0]["reason"] and "job 999 (backup)" in result["skipped"][0]["reason"]
    assert dockercli.volume_exists(name)
