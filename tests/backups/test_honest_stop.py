"""The "stop containers" choice is honest: a container labelled to be stopped during
backups is named on the form before the backup starts, and the audit records which
containers were really stopped (real engine)."""

import pytest

from accounts.models import AuditEvent
from backups import services
from tests import dockercli
from tests.backups.conftest import run_backup
from volumes.services import mirror_sync

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

SERVICE = "trap 'exit 0' TERM; sleep 3600 & wait"


def test_the_form_names_the_containers_a_label_stops_anyway(client_for):
    name = dockercli.create_volume()
    plain = dockercli.run_container(f"{name}:/srv", command=SERVICE)
    labelled = dockercli.run_container(f"{name}:/srv", labels={"cargohold.stop-during-backup": "true"}, command=SERVICE)
    mirror_sync()

    page = client_for("Operator").get(f"/volumes/{name}/backup/").content.decode()

    notice = page[page.index("data-always-stopped"):]
    notice = notice[:notice.index("</div>")]
    assert labelled in notice and plain not in notice and "whatever you choose" in notice


def test_no_notice_when_no_label_forces_a_stop(client_for):
    name = dockercli.create_volume()
    dockercli.run_container(f"{name}:/srv", command=SERVICE)
    mirror_sync()
    assert "data-always-stopped" not in client_for("Operator").get(f"/volumes/{name}/backup/").content.decode()


def test_the_audit_records_which_containers_were_really_stopped(no_enqueue, backup_root, volume_with_files):
    name = volume_with_files()
    dockercli.run_container(f"{name}:/srv", command=SERVICE)
    labelled = dockercli.run_container(f"{name}:/srv", labels={"cargohold.stop-during-backup": "true"}, command=SERVICE)
    mirror_sync()

    backup = run_backup(services.backup_start(volume_name=name, stop_containers=False))

    event = AuditEvent.objects.get(action="backup_finish", object_name=name)
    assert event.params["stop_containers"] is False
    assert event.params["stopped_containers"] == [labelled]
    assert backup.status == "succeeded"
