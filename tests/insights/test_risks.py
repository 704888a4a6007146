"""Where data is at risk: the rules, as pure functions over the mirror's records."""

from datetime import datetime, timedelta, timezone

import pytest

from insights.graph import ContainerRow, MountRow, VolumeRow
from insights.risks import HIGH, MEDIUM, KINDS, RiskSettings, find_risks, sensitive_reason

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc)
MB = 1024 * 1024


def _risks(volumes=(), containers=(), mounts=(), **kwargs):
    groups = find_risks(volumes=list(volumes), containers=list(containers), mounts=list(mounts), now=NOW, **kwargs)
    return {g.kind.slug: g.findings for g in groups}


@pytest.mark.parametrize("source, expected", [
    ("/", "whole filesystem"),
    ("//", "whole filesystem"),
    ("/etc", "/etc"),
    ("/etc/", "/etc"),
    ("/etc/ssl/private", "secrets"),
    ("/etc/ssh/ssh_host_rsa_key", "secrets"),
    ("/etc/shadow", "secrets"),
    ("/var/run/docker.sock", "Docker socket"),
    ("/run/docker.sock", "Docker socket"),
    ("/var/run", "holds the Docker socket"),
    ("/var/lib/docker", "data root"),
    ("/var/lib/docker/volumes/x/_data", "data root"),
    ("/var/lib", "holds the Docker data root"),
    ("/srv/data/../../etc", "/etc"),
])
def test_sensitive_host_paths(source, expected):
    assert expected in sensitive_reason(source, data_root="/var/lib/docker")


@pytest.mark.parametrize("source", ["/srv/app", "/home/me/code", "/etcetera", "/var/lib/dockerish", "/tmp"])
def test_ordinary_host_paths_are_not_sensitive(source):
    assert sensitive_reason(source, data_root="/var/lib/docker") is None


@pytest.mark.parametrize("source", ["/etc/localtime", "/etc/timezone", "/etc/hosts", "/etc/ssl/certs"])
def test_a_plain_file_under_etc_is_fine_read_only_but_not_writable(source):
    assert sensitive_reason(source, read_only=True) is None
    assert "writable" in sensitive_reason(source, read_only=False)


def test_extra_sensitive_paths_from_settings():
    assert sensitive_reason("/srv/secrets/db", extra=("/srv/secrets",))
    assert sensitive_reason("/srv/other", extra=("/srv/secrets",)) is None


def test_sensitive_bind_read_write_is_high_read_only_medium_and_socket_always_high():
    containers = [ContainerRow(1, "a"), ContainerRow(2, "b"), ContainerRow(3, "c"), ContainerRow(4, "d")]
    mounts = [
        MountRow(1, "bind", "/host-etc", source="/etc"),
        MountRow(2, "bind", "/host-etc", read_only=True, source="/etc"),
        MountRow(3, "bind", "/var/run/docker.sock", read_only=True, source="/var/run/docker.sock"),
        MountRow(4, "bind", "/code", source="/srv/code"),
    ]

    found = {f.subject: f for f in _risks(containers=containers, mounts=mounts)["sensitive-bind"]}

    assert set(found) == {"a", "b", "c"}
    assert found["a"].severity == HIGH and "read-write" in found["a"].detail
    assert found["b"].severity == MEDIUM and "read-only" in found["b"].detail
    assert found["c"].severity == HIGH


def test_data_root_comes_from_the_engine():
    mounts = [MountRow(1, "bind", "/d", read_only=True, source="/mnt/docker-data/volumes")]
    containers = [ContainerRow(1, "peeker")]

    assert "sensitive-bind" not in _risks(containers=containers, mounts=mounts)
    assert _risks(containers=containers, mounts=mounts, data_root="/mnt/docker-data")["sensitive-bind"]


def test_volume_written_by_several_containers():
    volumes = [VolumeRow(1, "shared"), VolumeRow(2, "read-by-many")]
    containers = [ContainerRow(1, "a"), ContainerRow(2, "b")]
    mounts = [
        MountRow(1, "volume", "/d", volume_id=1), MountRow(2, "volume", "/d", volume_id=1),
        MountRow(1, "volume", "/e", volume_id=2), MountRow(2, "volume", "/e", read_only=True, volume_id=2),
    ]

    found = _risks(volumes, containers, mounts)["rw-shared"]

    assert [(f.subject, f.detail) for f in found] == [("shared", "Written by 2 containers: a, b.")]


def test_large_writable_layer_over_the_threshold():
    containers = [ContainerRow(1, "fat", size_rw=200 * MB), ContainerRow(2, "thin", size_rw=10 * MB),
                  ContainerRow(3, "unknown")]

    found = _risks(containers=containers, config=RiskSettings(writable_layer_bytes=100 * MB))["writable-layer"]

    assert [f.subject for f in found] == ["fat"]
    assert "200 MiB written outside volumes" in found[0].detail


def test_anonymous_volumes_holding_data():
    volumes = [
        VolumeRow(1, "a" * 64, anonymous=True, size_bytes=5 * MB),
        VolumeRow(2, "b" * 64, anonymous=True, size_bytes=2 * MB),
        VolumeRow(3, "c" * 64, anonymous=True, size_bytes=10),
        VolumeRow(4, "named", size_bytes=50 * MB),
    ]
    containers = [ContainerRow(1, "user")]
    mounts = [MountRow(1, "volume", "/d", volume_id=1)]

    found = {f.subject: f for f in _risks(volumes, containers, mounts)["anonymous-data"]}

    assert set(found) == {"a" * 64, "b" * 64}
    assert found["b" * 64].severity == HIGH and "prune" in found["b" * 64].detail
    assert "mounted by user" in found["a" * 64].detail


def test_no_backup_only_when_backups_exist():
    volumes = [VolumeRow(1, "never", size_bytes=1), VolumeRow(2, "stale"), VolumeRow(3, "fresh")]
    last = {2: NOW - timedelta(days=10), 3: NOW - timedelta(hours=3)}

    assert "no-backup" not in _risks(volumes)
    found = {f.subject: f for f in _risks(volumes, last_backup=last)["no-backup"]}

    assert set(found) == {"never", "stale"}
    assert "Never backed up" in found["never"].detail and found["never"].severity == HIGH
    assert "10 days ago" in found["stale"].detail


def test_groups_explain_why_and_what_to_do_and_come_worst_first():
    containers = [ContainerRow(1, "fat", size_rw=500 * MB), ContainerRow(2, "root")]
    mounts = [MountRow(2, "bind", "/host", source="/")]

    groups = find_risks(volumes=[], containers=containers, mounts=mounts, now=NOW)

    assert [g.kind.slug for g in groups] == ["sensitive-bind", "writable-layer"]
    for kind in KINDS.values():
        assert kind.why and kind.todo


def test_a_clean_mirror_has_no_findings():
    volumes = [VolumeRow(1, "data", size_bytes=10 * MB)]
    containers = [ContainerRow(1, "app", size_rw=1000)]
    mounts = [MountRow(1, "volume", "/data", volume_id=1), MountRow(1, "bind", "/code", read_only=True, source="/srv/code")]

    assert find_risks(volumes=volumes, containers=containers, mounts=mounts, now=NOW, data_root="/var/lib/docker") == []


def test_a_never_backed_up_volume_keeps_its_risk_level_when_its_size_arrives():
    last = {}
    before = _risks([VolumeRow(1, "new", size_bytes=None)], last_backup=last)["no-backup"][0]
    after = _risks([VolumeRow(1, "new", size_bytes=5 * MB)], last_backup=last)["no-backup"][0]

    assert before.severity == after.severity == HIGH
    assert "not measured yet" in before.detail
    # Measured empty: nothing to lose yet, so the level may only go down.
    assert _risks([VolumeRow(1, "new", size_bytes=0)], last_backup=last)["no-backup"][0].severity != HIGH
