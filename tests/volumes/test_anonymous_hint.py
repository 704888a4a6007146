"""Anonymous volumes are recognisable: who mounts them where, beside the hex name, on every
page that names them (and who last did, once the container is gone)."""

import pytest
from django.utils import timezone

from backups.models import Backup
from jobs.models import Job
from tests import dockercli
from volumes import services
from volumes.models import Container, EngineStatus, Mount, Volume

HEX = "3f" * 32


def _anonymous_in_use():
    EngineStatus.objects.create(last_success_at=timezone.now())
    v = Volume.objects.create(name=HEX, anonymous=True, container_count=1, search_text=HEX,
                              last_mount={"container": "shop-worker", "destination": "/cache"})
    c = Container.objects.create(engine_id="c" * 64, name="shop-worker", state="running")
    Mount.objects.create(container=c, kind="volume", volume=v, source=HEX, destination="/cache")
    return v


@pytest.mark.engine
@pytest.mark.django_db
def test_the_sync_remembers_who_mounted_an_anonymous_volume_after_the_container_is_gone():
    ctr = dockercli.run_container("/cache")  # `-v /cache`: an anonymous volume
    services.mirror_sync()
    volume = Volume.objects.get(anonymous=True, mounts__container__name=ctr)
    assert volume.mount_hint == f"mounted by {ctr} at /cache"

    dockercli.docker("rm", "-f", ctr)
    services.mirror_sync()
    volume.refresh_from_db()
    assert volume.mount_hint == f"last mounted by {ctr} at /cache"
    dockercli.docker("volume", "rm", volume.name)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/volumes/", f"/volumes/{HEX}/", "/graph/"])
def test_inventory_pages_say_who_mounts_an_anonymous_volume(client_for, url):
    _anonymous_in_use()
    page = client_for("Viewer").get(url).content.decode()
    assert "mounted by shop-worker at /cache" in page


@pytest.mark.django_db
def test_backup_and_restore_pages_say_who_last_mounted_an_anonymous_volume(client_for):
    v = _anonymous_in_use()
    Volume.objects.filter(pk=v.pk).update(container_count=0)
    job = Job.objects.create(kind="backup", target=HEX, status=Job.Status.SUCCEEDED, finished_at=timezone.now())
    b = Backup.objects.create(job=job, volume=v, volume_name=HEX, key="k", size_bytes=10, sha256="0" * 64)
    admin = client_for("Admin")
    for url in ["/backups/", f"/backups/{b.pk}/", f"/backups/{b.pk}/restore/"]:
        page = admin.get(url).content.decode()
        assert "last mounted by shop-worker at /cache" in page, url
