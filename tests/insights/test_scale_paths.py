"""The paths made for a big mirror (bench/many_hosts.py): the overview's kept figures follow
every change, the host counts, the paged container list, the backups' volume filter."""

import re

import pytest
from django.utils import timezone

from backups.models import Backup
from hosts.models import Host
from hosts.selectors import hosts_with_counts
from jobs.models import Job
from volumes.models import Container, Mount, Volume

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def _total_volumes(html: str) -> str:
    return re.search(r'data-figure="total".*?in (\d+) volume', html, re.DOTALL).group(1)


def test_the_overview_follows_a_change_that_sends_no_signal(client_for):
    Volume.objects.create(name="a", size_bytes=MB)
    client = client_for("Viewer")
    assert _total_volumes(client.get("/").content.decode()) == "1"
    assert _total_volumes(client.get("/").content.decode()) == "1"  # the kept figures
    # A queryset update (what another process's sync looks like here): no signal, the
    # fingerprint alone must see it.
    Volume.objects.bulk_create([Volume(name="b", size_bytes=MB)])
    assert _total_volumes(client.get("/").content.decode()) == "2"
    Volume.objects.filter(name="b").update(gone_since=timezone.now())
    assert _total_volumes(client.get("/").content.decode()) == "1"


def test_the_protection_summary_follows_a_failed_backup(client_for):
    from policies.models import BackupPolicy, PolicyRun

    Volume.objects.create(name="db1", labels={"tier": "db"})
    policy = BackupPolicy.objects.create(name="nightly", selector_kind="label", selector_value="tier=db",
                                         cron="0 3 * * *", schedule_since=timezone.now())
    client = client_for("Viewer")
    assert "Failing (last run failed)" not in client.get("/").content.decode()
    job = Job.objects.create(kind="backup", status=Job.Status.FAILED, target="db1", error="disk full",
                             finished_at=timezone.now())
    PolicyRun.objects.bulk_create([PolicyRun(policy=policy, volume_name="db1", scheduled_for=timezone.now(), job=job)])
    assert "Failing (last run failed)" in client.get("/").content.decode()


def test_host_counts_count_each_hosts_present_volumes_and_containers():
    e1 = Host.objects.create(name="e1")
    for name in ("a", "b"):
        Volume.objects.create(name=name)
    Volume.objects.create(name="c", gone_since=timezone.now())
    Volume.objects.create(name="e1:x", host=e1)
    c = Container.objects.create(engine_id="1" * 64, name="one")
    Container.objects.create(engine_id="2" * 64, name="two", host=e1)
    Container.objects.create(engine_id="3" * 64, name="three", host=e1)
    Mount.objects.create(container=c, kind="volume", volume=Volume.objects.get(name="a"), destination="/a")
    counts = {h.name: (h.volumes_count, h.containers_count) for h in hosts_with_counts()}
    assert counts == {"local": (2, 1), "e1": (1, 2)}


def test_the_container_list_is_paged(client_for):
    Container.objects.bulk_create([Container(engine_id=f"{i:064x}", name=f"c{i:03d}") for i in range(101)])
    client = client_for("Viewer")
    first = client.get("/containers/").content.decode()
    assert first.count('data-container="') == 100 and "Page 1 of 2" in first and "101 containers" in first
    second = client.get("/containers/?page=2").content.decode()
    assert second.count('data-container="') == 1 and 'data-container="c100"' in second


def test_the_backups_volume_filter_is_a_text_field_above_200_names(client_for):
    client = client_for("Viewer")

    def backups(names):
        jobs = Job.objects.bulk_create([Job(kind="backup", status=Job.Status.SUCCEEDED, target=n) for n in names])
        Backup.objects.bulk_create([Backup(job=j, volume_name=n) for j, n in zip(jobs, names)])

    backups([f"v{i:03d}" for i in range(200)])
    html = client.get("/backups/").content.decode()
    assert '<select name="volume"' in html and 'value="v199"' in html
    backups(["v200"])
    html = client.get("/backups/").content.decode()
    assert '<select name="volume"' not in html and '<input type="search" name="volume"' in html
    assert "v200" in client.get("/backups/?volume=v200").content.decode()
