import pytest

from tests import dockercli
from tests.conftest import wait_for
from volumes import services
from volumes.models import Container, EngineStatus, Mount, Volume

pytestmark = [pytest.mark.django_db, pytest.mark.engine]


def test_sync_adds_named_volume_with_driver_options_and_labels():
    name = dockercli.create_volume(labels={"team": "shop", "odd": "<script>\"'é"}, driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})

    result = services.mirror_sync()

    volume = Volume.objects.get(name=name)
    assert result.volumes_added >= 1
    assert volume.driver == "local"
    assert volume.options == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert volume.labels["team"] == "shop"
    assert volume.labels["odd"] == "<script>\"'é"
    assert volume.anonymous is False
    assert volume.created_at is not None
    assert volume.gone_since is None
    assert volume.container_count == 0


def test_sync_marks_removed_volume_gone_and_revives_it_when_recreated():
    name = dockercli.create_volume()
    services.mirror_sync()
    dockercli.docker("volume", "rm", name)

    services.mirror_sync()
    gone = Volume.objects.get(name=name)
    assert gone.gone_since is not None

    dockercli.create_volume(name)
    services.mirror_sync()
    gone.refresh_from_db()
    assert gone.gone_since is None


def test_sync_records_mounts_of_every_kind_and_access_mode():
    shared = dockercli.create_volume()
    writer = dockercli.run_container(f"{shared}:/data", "/tmp:/host-tmp:ro", "tmpfs:/scratch")
    reader = dockercli.run_container(f"{shared}:/data:ro", start=False)

    services.mirror_sync()

    volume = Volume.objects.get(name=shared)
    assert volume.container_count == 2
    w = Container.objects.get(name=writer)
    r = Container.objects.get(name=reader)
    assert w.state == "running" and r.state == "created"
    kinds = {(m.kind, m.destination, m.read_only) for m in w.mounts.all()}
    assert kinds == {("volume", "/data", False), ("bind", "/host-tmp", True), ("tmpfs", "/scratch", False)}
    assert Mount.objects.get(container=r).read_only is True
    assert Mount.objects.get(container=w, kind="volume").volume == volume
    assert Mount.objects.get(container=w, kind="bind").source == "/tmp"


def test_sync_detects_anonymous_volumes_and_compose_labels():
    ctr = dockercli.run_container("/anon", labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "db"})

    services.mirror_sync()

    container = Container.objects.get(name=ctr)
    assert (container.compose_project, container.compose_service) == ("shop", "db")
    mount = container.mounts.get()
    assert mount.volume is not None and mount.volume.anonymous is True


def test_removed_container_is_marked_gone_and_no_longer_counts():
    vol = dockercli.create_volume()
    ctr = dockercli.run_container(f"{vol}:/data", start=False)
    services.mirror_sync()
    assert Volume.objects.get(name=vol).container_count == 1

    dockercli.docker("rm", "-f", ctr)
    services.mirror_sync()

    assert Container.objects.get(name=ctr).gone_since is not None
    assert Volume.objects.get(name=vol).container_count == 0


def test_second_sync_without_changes_writes_nothing():
    name = dockercli.create_volume()
    ctr = dockercli.run_container(f"{name}:/data")
    services.mirror_sync()
    volume_seen = Volume.objects.get(name=name).last_seen_at
    container_seen = Container.objects.get(name=ctr).last_seen_at
    mounts = list(Mount.objects.filter(container__name=ctr).values_list("pk", flat=True))

    services.mirror_sync()

    # Other test processes share the engine, so only our own rows can be held to "untouched".
    assert Volume.objects.get(name=name).last_seen_at == volume_seen
    assert Container.objects.get(name=ctr).last_seen_at == container_seen
    assert list(Mount.objects.filter(container__name=ctr).values_list("pk", flat=True)) == mounts


def test_sizes_refresh_measures_volume_and_writable_layer():
    vol = dockercli.create_volume()
    dockercli.fill_volume(vol, "head -c 300000 /dev/zero > /data/blob")
    ctr = dockercli.run_container(command="head -c 200000 /dev/zero > /junk; sleep 3600")
    services.mirror_sync()

    # The engine shares one disk-usage walk between concurrent callers (singleflight), so a
    # walk that another process started before our container existed may not list it yet.
    def measured():
        services.sizes_refresh()
        return Container.objects.get(name=ctr).size_rw is not None

    wait_for(measured, timeout=30, interval=0.5, message="a disk-usage walk that includes our container")

    volume = Volume.objects.get(name=vol)
    assert volume.size_bytes >= 300000
    assert volume.size_measured_at is not None
    assert Container.objects.get(name=ctr).size_rw is not None
    assert EngineStatus.get().sizes_ms is not None


def test_unreachable_engine_is_recorded_and_mirror_kept(settings):
    name = dockercli.create_volume()
    services.mirror_sync()
    from volumes import engine

    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    engine.reset_client()
    try:
        with pytest.raises(engine.EngineUnavailable):
            services.mirror_sync()
    finally:
        settings.DOCKER_HOST = ""
        engine.reset_client()

    status = EngineStatus.get()
    assert "nonexistent" in status.last_error or "did not answer" in status.last_error
    assert status.last_success_at is not None
    assert Volume.objects.get(name=name).gone_since is None


def test_first_periodic_sync_also_measures_sizes_so_a_new_install_shows_them():
    from volumes import tasks

    vol = dockercli.create_volume()
    dockercli.fill_volume(vol, "head -c 50000 /dev/zero > /data/blob")
    assert EngineStatus.objects.filter(sizes_measured_at__isnull=False).count() == 0

    tasks.sync_mirror()

    assert EngineStatus.get().sizes_measured_at is not None
    assert Volume.objects.get(name=vol).size_bytes >= 50000
