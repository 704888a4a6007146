"""Issue 10, items 1 and 10: nobody but an Admin chooses what reaches outside a volume
(driver options, device nodes), and an imported archive never passes for a volume's own
backup. Against the real engine, and the real worker where a restore runs."""

import io
import json
import re
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent
from backups.models import Backup
from backups.storage import get_storage
from jobs.models import Job
from project.errors import Refused
from restores import services
from restores.models import Restore
from tests import dockercli
from tests.conftest import wait_for
from tests.envsetup import VAR_DIR
from tests.restores.conftest import listing, run_backup_now, run_import, run_restore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

# Root-owned setuid content: what an Operator could have planted on the host before.
SETUID = "printf '#!/bin/sh\\nid\\n' > /data/suid && chmod 4755 /data/suid && echo hi > /data/hello"
ONLY_ADMINS = "Only an Admin"
BADGE = 'data-origin="imported"'


def bind(folder: Path) -> dict:
    return {"type": "none", "o": "bind", "device": str(folder)}


@pytest.fixture
def host_folder():
    """A host folder a bind-mounted volume would write into (under var/, removed after)."""
    folder = VAR_DIR / f"host-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _volume_facts(name: str) -> str:
    return dockercli.docker("volume", "inspect", "-f", "{{.Driver}} {{json .Options}}", name)


def _wait(restore: Restore) -> Restore:
    def ended():
        restore.refresh_from_db()
        return not restore.is_active and restore.job and not Job.objects.get(pk=restore.job_id).is_active
    wait_for(ended, timeout=180, message=f"restore #{restore.pk} to end")
    return restore


def _archive(folder: Path, name: str = "upload.tar.gz", files: dict | None = None) -> Path:
    """A recipe-style archive (members under data/), as people make them by hand."""
    path = folder / name
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("data")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_000_000_000
        tf.addfile(info)
        for fname, content in (files or {"hello": b"from elsewhere\n"}).items():
            info = tarfile.TarInfo(f"data/{fname}")
            info.size, info.mtime, info.mode = len(content), 1_000_000_000, 0o644
            tf.addfile(info, io.BytesIO(content))
    return path


def _nothing_queued(target: str) -> None:
    assert not Restore.objects.filter(volume_name=target).exists()
    assert not Job.objects.filter(kind__startswith="restore", target=target).exists()
    assert not dockercli.volume_exists(target)


# --- item 1: driver options and device nodes are an Admin's choice ---------------------------


@pytest.mark.worker
def test_an_operator_posting_bind_options_by_hand_is_refused_and_nothing_reaches_the_host(
        celery_worker, client_for, make_volume, host_folder):
    backup = run_backup_now(make_volume(SETUID))
    target = dockercli.unique_name("bind")
    opts = bind(host_folder)

    response = client_for("Operator").post(f"/backups/{backup.pk}/restore/", {
        "name": target, "driver": "local", "opt_key": list(opts), "opt_value": list(opts.values()),
    })

    assert response.status_code == 400 and ONLY_ADMINS in response.content.decode()
    _nothing_queued(target)
    assert list(host_folder.iterdir()) == []
    assert AuditEvent.objects.filter(action="restore_start", object_name=target, result="error").exists()


@pytest.mark.worker
def test_the_cli_acting_as_an_operator_cannot_choose_a_driver_options_or_device_nodes(
        celery_worker, make_volume, make_user, host_folder):
    backup = run_backup_now(make_volume(SETUID))
    operator = make_user("Operator")
    target = dockercli.unique_name("cli-bind")
    as_operator = ["--user", operator.username, "--wait", "--timeout", "120"]

    with pytest.raises(CommandError, match=ONLY_ADMINS):
        call_command("restore_backup", str(backup.pk), "--to", target,
                     *[f"--opt={k}={v}" for k, v in bind(host_folder).items()], *as_operator)
    with pytest.raises(CommandError, match=ONLY_ADMINS):
        call_command("restore_backup", str(backup.pk), "--to", target, "--driver", "vieux/sshfs", *as_operator)
    with pytest.raises(CommandError, match="device nodes"):
        call_command("restore_backup", str(backup.pk), "--to", target, "--allow-devices", *as_operator)

    _nothing_queued(target)
    assert list(host_folder.iterdir()) == []


@pytest.mark.worker
def test_an_operator_restoring_a_backup_whose_manifest_has_bind_options_gets_a_plain_local_volume(
        celery_worker, client_for, make_volume, make_user, host_folder):
    backup = run_backup_now(make_volume(SETUID))
    # As if the source volume had been a bind mount of a host folder.
    backup.manifest["volume"].update(driver="local", options=bind(host_folder))
    backup.save(update_fields=["manifest"])
    client = client_for("Operator")
    url = f"/backups/{backup.pk}/restore/"

    page = client.get(url).content.decode()
    assert 'name="opt_key"' not in page and 'name="driver"' not in page and 'name="allow_devices"' not in page
    assert "plain local volume" in page and ONLY_ADMINS in page
    target = dockercli.unique_name("plain")
    response = client.post(url, {"name": target, "label_key": [""], "label_value": [""]})  # what the page sends

    assert response.status_code == 302, response.content.decode()[:2000]
    restore = _wait(Restore.objects.get(volume_name=target))
    assert restore.status == "succeeded", restore.error
    assert (restore.driver, restore.options) == ("local", {})
    assert _volume_facts(target) in ("local null", "local {}")
    assert set(listing(target)["entries"]) == {".", "./suid", "./hello"}
    # The service (the CLI's and any API's way in) gives the same without a form.
    other = dockercli.unique_name("plain-svc")
    queued = services.restore_new_start(backup=backup, volume_name=other, user=make_user("Operator"))
    assert (queued.driver, queued.options) == ("local", {})
    assert list(host_folder.iterdir()) == []


@pytest.mark.worker
def test_driver_options_follow_the_permission_to_create_volumes(celery_worker, client_for, make_volume):
    backup = run_backup_now(make_volume("echo hi > /data/hello"))
    url = f"/backups/{backup.pk}/restore/"
    tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}
    form = {"driver": "local", "opt_key": list(tmpfs), "opt_value": list(tmpfs.values())}
    refused, chosen = dockercli.unique_name("op-tmpfs"), dockercli.unique_name("admin-tmpfs")

    response = client_for("Operator").post(url, {"name": refused, **form})
    assert response.status_code == 400 and ONLY_ADMINS in response.content.decode()
    _nothing_queued(refused)

    admin = client_for("Admin")
    assert 'name="opt_key"' in admin.get(url).content.decode()
    response = admin.post(url, {"name": chosen, **form})
    assert response.status_code == 302
    restore = _wait(Restore.objects.get(volume_name=chosen))
    assert restore.status == "succeeded", restore.error
    assert restore.options == tmpfs and json.loads(_volume_facts(chosen).split(" ", 1)[1]) == tmpfs


def test_allowing_device_nodes_is_refused_to_an_operator_on_the_page_and_in_the_services(
        no_enqueue, backup_root, make_volume, client_for, make_user):
    volume = make_volume("echo hi > /data/hello")
    backup = run_backup_now(volume)
    target = dockercli.unique_name("devices")

    response = client_for("Operator").post(f"/backups/{backup.pk}/restore/", {"name": target, "allow_devices": "on"})
    assert response.status_code == 400 and "device nodes" in response.content.decode()
    _nothing_queued(target)
    with pytest.raises(Refused, match="device nodes"):
        services.restore_new_start(backup=backup, volume_name=target, allow_devices=True, user=make_user("Operator"))
    # Restoring in place does not make it an Operator's choice either (a role given only that).
    in_place_only = make_user(None)
    in_place_only.user_permissions.add(*Permission.objects.filter(codename__in=["view_inventory", "restore_in_place"]))
    with pytest.raises(Refused, match="device nodes"):
        services.restore_in_place_start(backup=backup, confirm_name=volume, allow_devices=True,
                                        user=type(in_place_only).objects.get(pk=in_place_only.pk))
    assert not Restore.objects.exists()

    admin = make_user("Admin")
    assert services.restore_new_start(backup=backup, volume_name=target, allow_devices=True, user=admin).allow_devices
    assert services.restore_in_place_start(backup=backup, confirm_name=volume, allow_devices=True,
                                           user=admin).allow_devices


def test_an_imported_manifest_never_brings_its_driver_options_nor_passes_for_cargoholds_own(
        no_enqueue, backup_root, make_user, client_for, tmp_path, host_folder):
    from backups.catalogue import backups_rescan

    admin = make_user("Admin")
    imported = run_import(_archive(tmp_path), "imported-db", user=admin)
    assert imported.status == "succeeded", imported.error
    # Someone edits the stored manifest: bind options, and "made by Cargohold, manually".
    manifest_file = Path(get_storage().location(imported.key + ".manifest.json"))
    data = json.loads(manifest_file.read_text())
    data["origin"] = "manual"
    data["volume"].update(driver="local", options=bind(host_folder))
    manifest_file.write_text(json.dumps(data))
    Backup.objects.all().delete()  # the catalogue is rebuilt from storage

    backups_rescan()

    row = Backup.objects.get(uid=imported.uid)
    assert row.origin == "imported"
    page = client_for("Admin").get(f"/backups/{row.pk}/restore/").content.decode()
    assert 'name="opt_key" value="device"' not in page and f'value="{host_folder}"' not in page
    # Even an Admin's restore that keeps "the manifest's" settings gets a plain local volume.
    target = dockercli.unique_name("from-import")
    restore = run_restore(services.restore_new_start(backup=row, volume_name=target, user=admin))
    assert restore.status == "succeeded", restore.error
    assert (restore.driver, restore.options) == ("local", {}) and _volume_facts(target) in ("local null", "local {}")
    assert list(host_folder.iterdir()) == []
    # An Admin who types the options does get them (their choice, not the archive's).
    chosen = services.restore_new_start(backup=row, volume_name=dockercli.unique_name("typed"),
                                        options={"type": "tmpfs", "device": "tmpfs"}, user=admin)
    assert chosen.options == {"type": "tmpfs", "device": "tmpfs"}


# --- item 10: an import never poses as a volume's own backup ------------------------------------


def _row(html: str, backup_id: int) -> str:
    match = re.search(rf'<tr data-backup="{backup_id}".*?</tr>', html, re.S)
    assert match, f"no row for backup #{backup_id}"
    return match.group(0)


def test_an_import_under_an_existing_volumes_name_is_shown_as_imported_everywhere(
        no_enqueue, backup_root, make_volume, make_user, client_for, tmp_path):
    volume = make_volume("echo own > /data/own")
    own = run_backup_now(volume)
    imported = run_import(_archive(tmp_path), volume)
    assert imported.status == "succeeded" and imported.volume is not None
    restore = services.restore_new_start(backup=imported, volume_name=dockercli.unique_name("copy"),
                                         user=make_user("Admin"))
    client = client_for("Admin")

    for url in ("/backups/", f"/backups/?volume={volume}", f"/volumes/{volume}/"):
        html = client.get(url).content.decode()
        assert BADGE in _row(html, imported.pk) and BADGE not in _row(html, own.pk), url
    for url in (f"/backups/{imported.pk}/", f"/backups/{imported.pk}/restore/",
                f"/backups/{imported.pk}/restore-in-place/", "/restores/", f"/restores/{restore.pk}/"):
        html = client.get(url).content.decode()
        assert BADGE in html, url
        assert "not made from" in html or url == "/restores/", url
    assert BADGE not in client.get(f"/backups/{own.pk}/").content.decode()


@pytest.mark.worker
def test_restoring_an_import_in_place_needs_the_admins_explicit_confirmation(
        celery_worker, make_volume, make_user, client_for, tmp_path):
    volume = make_volume("echo own > /data/own")
    imported = run_import(_archive(tmp_path), volume)
    url = f"/backups/{imported.pk}/restore-in-place/"
    client = client_for("Admin")

    assert 'name="confirm_imported"' in client.get(url).content.decode()
    response = client.post(url, {"confirm_name": volume})
    assert response.status_code == 400 and "not made from this volume" in response.content.decode()
    with pytest.raises(Refused, match="not made from this volume"):
        services.restore_in_place_start(backup=imported, confirm_name=volume, user=make_user("Admin"))
    with pytest.raises(CommandError, match="--confirm-imported"):
        call_command("restore_backup", str(imported.pk), "--in-place")
    assert not Restore.objects.exists()
    assert set(listing(volume)["entries"]) == {".", "./own"}

    response = client.post(url, {"confirm_name": volume, "confirm_imported": "on"})
    assert response.status_code == 302
    restore = _wait(Restore.objects.get())
    assert restore.status == "succeeded", restore.error
    assert set(listing(volume)["entries"]) == {".", "./hello"}
    start = AuditEvent.objects.get(action="restore_start", params__restore=restore.pk)
    assert start.params["confirm_imported"] is True
