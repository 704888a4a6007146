"""/metrics: protected, read from the database at scrape time, the same from every worker."""

import os
import socket
import subprocess
import sys
import uuid

import pytest
from django.utils import timezone

from tests.conftest import ROOT, wait_for
from tests.metrics.conftest import value

pytestmark = pytest.mark.django_db


def test_metrics_are_off_until_configured(client, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES = "", []
    response = client.get("/metrics")
    assert response.status_code == 404


def test_metrics_need_the_token(client, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES = "right-token", []
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer right-token"})
    assert response.status_code == 200 and b"cargohold_engine_reachable" in response.content


def test_metrics_answer_allowed_addresses_only(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8", "127.0.0.1"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_job_counts_and_durations_by_kind_and_outcome(scrape):
    from jobs.models import Job

    now = timezone.now()
    for seconds, status in ((10, "succeeded"), (30, "succeeded"), (5, "failed")):
        Job.objects.create(kind="backup", status=status, started_at=now - timezone.timedelta(seconds=seconds),
                           finished_at=now, end_handled=True)
    Job.objects.create(kind="restore", status="queued")
    samples = scrape()
    assert value(samples, "cargohold_jobs_total", kind="backup", outcome="succeeded") == 2
    assert value(samples, "cargohold_jobs_total", kind="backup", outcome="failed") == 1
    assert value(samples, "cargohold_jobs_active", kind="restore", status="queued") == 1
    assert value(samples, "cargohold_job_duration_seconds_count", kind="backup", outcome="succeeded") == 2
    assert value(samples, "cargohold_job_duration_seconds_sum", kind="backup", outcome="succeeded") == pytest.approx(40)


def test_queue_depth_is_the_redis_queue_length(scrape, settings):
    import redis

    queue = f"cargohold-metrics-test-{uuid.uuid4().hex[:8]}"
    settings.METRICS_QUEUES = [queue]
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.rpush(queue, "a", "b", "c")
        samples = scrape()
        assert value(samples, "cargohold_queue_depth", queue=queue) == 3
        assert value(samples, "cargohold_redis_up") == 1
    finally:
        client.delete(queue)


def test_engine_reachable_follows_the_mirrors_engine_status(scrape):
    from volumes.models import EngineStatus

    status = EngineStatus.get()
    status.last_success_at, status.last_error = timezone.now(), ""
    status.save()
    assert value(scrape(), "cargohold_engine_reachable") == 1
    status.last_error = "Cannot connect to the Docker daemon"
    status.save()
    assert value(scrape(), "cargohold_engine_reachable") == 0


def test_each_host_reports_whether_its_worker_is_online(scrape):
    from datetime import timedelta

    from hosts.models import Host

    Host.objects.create(name="e1", heartbeat_at=timezone.now())
    Host.objects.create(name="e2", heartbeat_at=timezone.now() - timedelta(hours=1))
    samples = scrape()
    assert value(samples, "cargohold_host_online", host="e1") == 1
    assert value(samples, "cargohold_host_online", host="e2") == 0
    assert value(samples, "cargohold_host_last_heartbeat_timestamp_seconds", host="e2") > 0


@pytest.mark.engine
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_volume_figures_after_a_real_backup(scrape, volume_with_files, celery_worker):
    from backups.models import Backup
    from backups.services import backup_start
    from volumes.models import Volume

    name = volume_with_files()
    before = scrape()
    assert value(before, "cargohold_volume_protection", volume=name, state="unprotected") == 1
    assert value(before, "cargohold_volume_last_backup_age_seconds", volume=name) is None  # never backed up
    assert value(before, "cargohold_engine_reachable") == 1  # the sync just succeeded
    backup = backup_start(volume_name=name)
    wait_for(lambda: not Backup.objects.get(pk=backup.pk).is_active, timeout=120, message="the backup to end")
    backup = Backup.objects.get(pk=backup.pk)
    assert backup.status == "succeeded", backup.error
    samples = scrape()
    assert value(samples, "cargohold_volume_last_backup_size_bytes", volume=name) == backup.size_bytes
    assert value(samples, "cargohold_volume_last_backup_duration_seconds", volume=name) == pytest.approx(
        backup.duration.total_seconds())
    assert 0 <= value(samples, "cargohold_volume_last_backup_age_seconds", volume=name) < 600
    assert value(samples, "cargohold_jobs_total", kind="backup", outcome="succeeded") >= 1
    size = Volume.objects.get(name=name).size_bytes
    assert value(samples, "cargohold_volume_size_bytes", volume=name) == size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_every_gunicorn_worker_answers_the_same_figures(tmp_path):
    """Nothing is counted in a worker's memory: four workers, one answer (the database's)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from jobs.models import Job

    for _ in range(3):
        Job.objects.create(kind="backup", status="failed", end_handled=True)
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=os.environ["CARGOHOLD_TEST_DATABASE_URL"],
               METRICS_TOKEN="gunicorn-test-token", METRICS_ALLOWED_ADDRESSES="")
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "4", "--bind", f"127.0.0.1:{port}",
                             "project.wsgi:application"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": "Bearer gunicorn-test-token"})

    def failed_count():
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "cargohold_jobs_total" and s.labels == {"kind": "backup", "outcome": "failed"})

    def up():
        try:
            return failed_count() is not None
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, message=f"gunicorn to answer (log: {tmp_path / 'gunicorn.log'})")
        assert {failed_count() for _ in range(12)} == {3}
        Job.objects.create(kind="backup", status="failed", end_handled=True)
        assert {failed_count() for _ in range(12)} == {4}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
