"""Copying and moving a volume to another host (hosts.transfers): the refusals, who may,
the pages, the CLI, and how each step follows the previous step's job (database only: the
jobs are created but not sent; a job's end is simulated as the runner ends it)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import AuditEvent
from backups.models import Backup
from hosts import transfers
from hosts.models import Host, Transfer
from jobs.models import Job
from jobs.services import job_end
from jobs.signals import job_ended
from project.errors import Refused
from restores.models import Restore
from volumes.models import Container, Mount, Volume

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    """Jobs are created but never sent: a session worker must not race the simulation."""
    sent = []
    monkeypatch.setattr("jobs.services.job_enqueue", lambda **kwargs: sent.append(kwargs))
    return sent


@pytest.fixture(autouse=True)
def _backups_in_tmp(settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"


@pytest.fixture
def hosts(db):
    """e1 online (a fresh heartbeat), e2 registered but offline (never heard from)."""
    now = timezone.now()
    return {"e1": Host.objects.create(name="e1", heartbeat_at=now, worker_started_at=now),
            "e2": Host.objects.create(name="e2")}


@pytest.fixture
def source(hosts):
    return Volume.objects.create(name="shop", driver="local", labels={"app": "shop"}, size_bytes=10)


def _start(volume, *, user=None, host="e1", name="", remove=False):
    return transfers.transfer_start(volume=volume, target_host=host, target_name=name, remove_source=remove,
                                    user=user, trigger="test")


def _end(job: Job, status: str = Job.Status.SUCCEEDED, error: str = "") -> None:
    """As the runner ends a job: the row moves to its end, then job_end (on_end + job_ended)."""
    Job.objects.filter(pk=job.pk).update(status=status, error=error, finished_at=timezone.now(),
                                         started_at=timezone.now())
    job.refresh_from_db()
    assert job_end(job)


def _backup_succeeds(transfer: Transfer) -> None:
    """The source's worker wrote the archive: key and checksum recorded, then its job ends."""
    backup = Backup.objects.get(pk=transfer.backup_id)
    Backup.objects.filter(pk=backup.pk).update(key="shop/shop-1.tar.zst", sha256="a" * 64, size_bytes=100,
                                               file_count=2, manifest={"volume": {"name": "shop", "driver": "local",
                                                                                  "options": {}, "labels": {}}})
    _end(backup.job)


def _fresh(transfer: Transfer) -> Transfer:
    return Transfer.objects.select_related("backup__job", "restore__job", "removal_job").get(pk=transfer.pk)


# --- refusals: nothing started ------------------------------------------------------------


@pytest.mark.parametrize("case, expected", [
    ("same host", "already on the host local"),
    ("offline host", "The host e2 is offline"),
    ("unknown host", "No host named 'nowhere'"),
    ("invalid name", "is not a valid volume name"),
    ("target exists", "already exists on the host e1"),
    ("gone source", "no longer on its engine"),
])
def test_a_transfer_that_cannot_work_is_refused_and_starts_nothing(source, case, expected):
    kwargs = {"same host": {"host": "local"}, "offline host": {"host": "e2"}, "unknown host": {"host": "nowhere"},
              "invalid name": {"name": "-bad name"}}.get(case, {})
    if case == "target exists":
        Volume.objects.create(name="e1:shop", host=Host.objects.get(name="e1"), driver="local")
    if case == "gone source":
        Volume.objects.filter(pk=source.pk).update(gone_since=timezone.now())
        source.refresh_from_db()
    with pytest.raises(Refused, match=expected):
        _start(source, **kwargs)
    assert not Transfer.objects.exists() and not Backup.objects.exists() and not Job.objects.exists()
    event = AuditEvent.objects.get(action="volume_transfer")
    assert event.result == "error" and expected.split()[0] in event.error


def test_a_second_transfer_into_the_same_target_is_refused_while_the_first_runs(source):
    _start(source)
    with pytest.raises(Refused, match="already under way"):
        _start(source)
    assert Transfer.objects.count() == 1


def test_a_volume_of_an_offline_host_is_not_transferred(hosts):
    volume = Volume.objects.create(name="e2:db", host=hosts["e2"], driver="local")
    with pytest.raises(Refused, match="The host e2 of the volume is offline"):
        _start(volume, host="e1")
    assert not Transfer.objects.exists() and not Job.objects.exists()


def test_a_volume_of_another_host_may_come_to_the_default_host(hosts):
    local = Host.objects.get(name="local")
    Host.objects.filter(pk=local.pk).update(heartbeat_at=timezone.now())
    transfer = _start(Volume.objects.create(name="e1:db", host=hosts["e1"], driver="local"), host="local")
    assert transfer.target_ref == "db" and transfer.backup.job.host == "e1"


def test_the_target_hosts_offered_are_the_online_others(source, hosts):
    assert [h.name for h in transfers.transfer_targets(volume=source)] == ["e1"]


# --- who may ------------------------------------------------------------------------------


def test_a_viewer_may_not_copy(source, make_user):
    with pytest.raises(Refused, match="does not allow copying"):
        _start(source, user=make_user("Viewer"))
    assert not Transfer.objects.exists()


def test_an_operator_may_copy_but_not_move(source, make_user):
    operator = make_user("Operator")
    with pytest.raises(Refused, match="does not allow removing"):
        _start(source, user=operator, remove=True)
    transfer = _start(source, user=operator)
    assert transfer.created_by == operator and not transfer.remove_source


def test_an_admin_may_move(source, make_user):
    transfer = _start(source, user=make_user("Admin"), remove=True)
    assert transfer.remove_source


# --- the steps ----------------------------------------------------------------------------


def test_a_transfer_starts_with_a_backup_on_the_source_host(source, no_enqueue):
    transfer = _start(source, name="shop-copy")
    job = transfer.backup.job
    assert (job.kind, job.host, job.target) == ("backup", "local", "shop")
    assert transfer.target_ref == "e1:shop-copy"
    assert transfer.progress().phase == transfers.QUEUED
    assert AuditEvent.objects.filter(action="volume_transfer", result="ok", object_name="shop").exists()


def test_a_move_restores_on_the_target_host_then_removes_the_source(source, make_user):
    admin = make_user("Admin")
    transfer = _start(source, user=admin, remove=True)

    _backup_succeeds(transfer)
    transfer = _fresh(transfer)
    restore = transfer.restore
    assert restore is not None and restore.mode == Restore.Mode.NEW
    assert (restore.job.kind, restore.job.host, restore.job.target) == ("restore", "e1", "e1:shop")
    assert restore.volume_name == "e1:shop" and restore.backup_id == transfer.backup_id
    assert restore.job.created_by == admin
    assert transfer.removal_job is None  # the source is not touched before the copy succeeded
    assert transfer.progress().phase == transfers.RESTORING

    _end(restore.job)
    transfer = _fresh(transfer)
    removal = transfer.removal_job
    assert (removal.kind, removal.host, removal.target) == ("volume_remove", "local", "shop")
    assert transfer.progress().phase == transfers.REMOVING and transfer.ended_at is None

    _end(removal)
    transfer = _fresh(transfer)
    assert transfer.progress().phase == transfers.DONE and transfer.ended_at is not None
    end = AuditEvent.objects.get(action="volume_transfer_end")
    assert end.result == "ok" and end.params["outcome"] == transfers.DONE


def test_a_copy_ends_when_the_restore_succeeded_and_keeps_the_source(source):
    transfer = _start(source)
    _backup_succeeds(transfer)
    _end(_fresh(transfer).restore.job)
    transfer = _fresh(transfer)
    assert transfer.removal_job is None
    assert transfer.progress().phase == transfers.DONE and "the source is kept" in transfer.progress().message


def test_a_failed_backup_ends_the_transfer_failed_with_no_restore(source):
    transfer = _start(source, remove=True)
    _end(transfer.backup.job, Job.Status.FAILED, "The engine said no.")
    transfer = _fresh(transfer)
    assert transfer.restore is None and transfer.removal_job is None
    progress = transfer.progress()
    assert (progress.phase, progress.step) == (transfers.FAILED, transfers.STEP_BACKUP)
    assert "The engine said no." in progress.message
    assert not Restore.objects.exists() and transfer.ended_at is not None
    assert AuditEvent.objects.get(action="volume_transfer_end").result == "error"


def test_a_failed_restore_leaves_the_source_alone(source):
    transfer = _start(source, remove=True)
    _backup_succeeds(transfer)
    _end(_fresh(transfer).restore.job, Job.Status.FAILED, "The archive's SHA-256 does not match.")
    transfer = _fresh(transfer)
    assert transfer.removal_job is None
    progress = transfer.progress()
    assert (progress.phase, progress.step) == (transfers.FAILED, transfers.STEP_RESTORE)
    assert "SHA-256" in progress.message and "not touched" in progress.message
    assert not Job.objects.filter(kind="volume_remove").exists()


def test_a_restore_refused_at_its_start_fails_the_transfer(source):
    transfer = _start(source, remove=True)
    # Meanwhile someone made a volume of that name on e1 (the mirror knows it).
    Volume.objects.create(name="e1:shop", host=Host.objects.get(name="e1"), driver="local")
    _backup_succeeds(transfer)
    transfer = _fresh(transfer)
    assert transfer.restore is None and "already exists" in transfer.error
    assert transfer.progress().phase == transfers.FAILED


def test_a_move_whose_source_is_in_use_ends_copied_with_the_source_kept(source):
    container = Container.objects.create(engine_id="c" * 64, name="shop-app", state="running")
    Mount.objects.create(container=container, volume=source, kind="volume", destination="/var/lib/shop")
    transfer = _start(source, remove=True)
    _backup_succeeds(transfer)
    _end(_fresh(transfer).restore.job)
    transfer = _fresh(transfer)
    assert transfer.removal_job is None and not Job.objects.filter(kind="volume_remove").exists()
    progress = transfer.progress()
    assert progress.phase == transfers.COPIED and progress.ok
    assert "the source was not removed" in progress.message and "shop-app" in progress.message
    assert transfer.ended_at is not None


def test_a_lost_signal_is_caught_up_by_the_follower(source):
    transfer = _start(source)
    backup = transfer.backup
    Backup.objects.filter(pk=backup.pk).update(key="shop/shop-1.tar.zst", sha256="a" * 64)
    # The job ended and its end was handled, but the signal never reached us (a dying worker).
    Job.objects.filter(pk=backup.job_id).update(status="succeeded", finished_at=timezone.now(), end_handled=True)
    assert _fresh(transfer).restore is None
    assert transfers.transfers_follow() == 1
    assert _fresh(transfer).restore is not None
    transfers.transfers_follow()  # again: idempotent
    assert Restore.objects.count() == 1


def test_a_second_delivery_of_the_signal_starts_no_second_restore(source):
    transfer = _start(source)
    _backup_succeeds(transfer)
    job = Job.objects.get(pk=transfer.backup.job_id)
    job_ended.send(sender=job.kind, job=job)
    assert Restore.objects.count() == 1 and Job.objects.filter(kind="restore").count() == 1


# --- pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("role, method, data, expected", [
    ("Viewer", "get", None, 403),
    ("Viewer", "post", {"target_host": "e1", "target_name": "shop"}, 403),
    ("Operator", "get", None, 200),
    ("Operator", "post", {"target_host": "e1", "target_name": "shop"}, 302),
    ("Operator", "post", {"target_host": "e1", "target_name": "shop", "remove_source": "on"}, 403),
    ("Admin", "post", {"target_host": "e1", "target_name": "shop", "remove_source": "on"}, 302),
])
def test_the_transfer_form_checks_the_role(source, client_for, role, method, data, expected):
    client = client_for(role)
    response = getattr(client, method)("/volumes/shop/transfer/", data) if data else client.get("/volumes/shop/transfer/")
    assert response.status_code == expected
    if expected == 302:
        transfer = Transfer.objects.get()
        assert response["Location"] == f"/transfers/{transfer.pk}/"
        assert transfer.remove_source == ("remove_source" in data)
    elif method == "post":
        assert not Transfer.objects.exists()


def test_the_form_offers_online_hosts_other_than_the_sources(source, client_for):
    page = client_for("Admin").get("/volumes/shop/transfer/").content.decode()
    assert '<option value="e1"' in page and '<option value="e2"' not in page
    assert 'value="shop"' in page  # the new name defaults to the source's
    assert "Remove the source after a successful copy" in page and 'data-warning="remove-source"' in page


def test_an_operator_is_not_offered_the_removal(source, client_for):
    page = client_for("Operator").get("/volumes/shop/transfer/").content.decode()
    assert "Remove the source after a successful copy" not in page


def test_a_refused_post_says_why_and_starts_nothing(source, client_for):
    Volume.objects.create(name="e1:shop", host=Host.objects.get(name="e1"), driver="local")
    response = client_for("Admin").post("/volumes/shop/transfer/", {"target_host": "e1", "target_name": "shop"})
    assert response.status_code == 400 and "already exists on the host e1" in response.content.decode()
    assert not Transfer.objects.exists()


def test_the_form_wants_post_with_csrf(source, make_user, client_for):
    from django.test import Client

    assert client_for("Admin").put("/volumes/shop/transfer/").status_code == 405
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("Admin"))
    assert client.post("/volumes/shop/transfer/", {"target_host": "e1", "target_name": "shop"}).status_code == 403
    assert not Transfer.objects.exists()


def test_the_volume_page_links_to_the_form_only_with_several_hosts(source, client_for):
    admin = client_for("Admin")
    assert 'data-action="transfer"' in admin.get("/volumes/shop/").content.decode()
    assert 'data-action="transfer"' not in client_for("Viewer").get("/volumes/shop/").content.decode()
    Host.objects.exclude(name="local").delete()
    assert 'data-action="transfer"' not in admin.get("/volumes/shop/").content.decode()


def test_the_transfer_page_shows_its_steps_and_polls_until_it_ends(source, client_for):
    transfer = _start(source, remove=True)
    viewer = client_for("Viewer")
    page = viewer.get(f"/transfers/{transfer.pk}/").content.decode()
    assert 'data-phase="queued"' in page and 'data-step="1"' in page and 'data-step="3"' in page
    assert f'id="job-{transfer.backup.job_id}"' in page and "hx-trigger" in page
    polled = viewer.get(f"/transfers/{transfer.pk}/", headers={"HX-Request": "true"})
    assert polled.status_code == 200 and "<html" not in polled.content.decode()

    _end(transfer.backup.job, Job.Status.FAILED, "No space left.")
    polled = viewer.get(f"/transfers/{transfer.pk}/", headers={"HX-Request": "true"})
    assert polled.status_code == 286 and 'data-phase="failed"' in polled.content.decode()
    assert "No space left." in polled.content.decode()


def test_a_done_transfer_links_to_the_new_volume(source, client_for):
    transfer = _start(source)
    _backup_succeeds(transfer)
    _end(_fresh(transfer).restore.job)
    page = client_for("Viewer").get(f"/transfers/{transfer.pk}/").content.decode()
    assert 'href="/volumes/e1:shop/"' in page and 'data-phase="done"' in page


def test_an_unknown_transfer_is_404(client_for, db):
    assert client_for("Admin").get("/transfers/999/").status_code == 404


# --- the CLI ------------------------------------------------------------------------------


def test_the_cli_starts_a_transfer_and_prints_its_id(source):
    out = StringIO()
    call_command("transfer_volume", "shop", "--to-host", "e1", "--name", "shop2", stdout=out)
    transfer = Transfer.objects.get()
    assert out.getvalue().strip() == str(transfer.pk) and transfer.target_ref == "e1:shop2"
    assert transfer.trigger == "cli" and transfer.requested_by.startswith("cli")


def test_the_cli_refuses_what_the_page_refuses(source):
    with pytest.raises(CommandError, match="already on the host local"):
        call_command("transfer_volume", "shop", "--to-host", "local", stdout=StringIO())
    with pytest.raises(CommandError, match="No volume 'nope'"):
        call_command("transfer_volume", "nope", "--to-host", "e1", stdout=StringIO())
    assert not Transfer.objects.exists()


def test_the_cli_move_as_an_operator_is_refused(source, make_user):
    operator = make_user("Operator")
    with pytest.raises(CommandError, match="may not move volumes"):
        call_command("transfer_volume", "shop", "--to-host", "e1", "--remove-source", "--user", operator.username,
                     stdout=StringIO())
    assert not Transfer.objects.exists()


def test_the_transfer_list_filters_by_host_and_volume(source, hosts, client_for):
    to_e1 = _start(source)
    Host.objects.filter(name="e2").update(heartbeat_at=timezone.now())
    other = Volume.objects.create(name="logs", driver="local")
    to_e2 = _start(other, host="e2")
    viewer = client_for("Viewer")
    page = viewer.get("/transfers/").content.decode()
    assert f'data-transfer="{to_e1.pk}"' in page and f'data-transfer="{to_e2.pk}"' in page
    page = viewer.get("/transfers/?host=e2").content.decode()
    assert f'data-transfer="{to_e1.pk}"' not in page and f'data-transfer="{to_e2.pk}"' in page
    page = viewer.get("/transfers/?volume=shop").content.decode()
    assert f'data-transfer="{to_e1.pk}"' in page and f'data-transfer="{to_e2.pk}"' not in page
    polled = viewer.get("/transfers/", headers={"HX-Request": "true"})
    assert polled.status_code == 200 and "<html" not in polled.content.decode()
    assert 'hx-trigger="every 2s"' in polled.content.decode()  # something on it is active


def test_another_teams_transfer_is_404_and_not_listed(source, make_user):
    from django.test import Client

    from accounts.models import Team, TeamMembership, TeamRule

    theirs = _start(source)  # "shop" is labelled app=shop: no team's
    team = Team.objects.create(name="ops")
    TeamRule.objects.create(team=team, kind="label", value="team=ops")
    mine_volume = Volume.objects.create(name="ops-db", driver="local", labels={"team": "ops"})
    mine = _start(mine_volume)
    member = make_user(None, "ops-operator")
    TeamMembership.objects.create(team=team, user=member, role="Operator")
    client = Client()
    client.force_login(member)
    assert client.get(f"/transfers/{mine.pk}/").status_code == 200
    assert client.get(f"/transfers/{theirs.pk}/").status_code == 404
    page = client.get("/transfers/").content.decode()
    assert f'data-transfer="{mine.pk}"' in page and f'data-transfer="{theirs.pk}"' not in page
    assert client.get("/volumes/shop/transfer/").status_code == 404
