"""What /metrics reports, read from the database (and Redis) at scrape time.

Nothing is counted in process memory, so every gunicorn worker answers the same figures
and a restart loses nothing: the job rows are the counters. Each scrape is a handful of
aggregate queries whatever the number of volumes and jobs.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from backups.models import Backup
from jobs.models import Job
from policies.selectors import protection_all
from volumes.context_processors import engine_problem
from volumes.models import EngineStatus, Volume

PROTECTION_STATES = ("ok", "overdue", "failed", "unprotected", "unprotected-in-use")
ENDED = [s for s in Job.Status.values if s not in Job.ACTIVE]
# kombu's Redis transport keeps a queue's prioritised messages in lists beside it.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class CargoholdCollector:
    def collect(self):
        yield from self._volumes()
        yield from self._jobs()
        yield from self._queues()
        yield from self._engine()

    def _volumes(self):
        now = timezone.now()
        size = GaugeMetricFamily("cargohold_volume_size_bytes", "The volume's size at the last measurement.",
                                 labels=["volume"])
        age = GaugeMetricFamily("cargohold_volume_last_backup_age_seconds",
                                "Seconds since the volume's last successful backup finished (absent: never).",
                                labels=["volume"])
        last_size = GaugeMetricFamily("cargohold_volume_last_backup_size_bytes",
                                      "Stored size of the volume's last successful backup.", labels=["volume"])
        last_duration = GaugeMetricFamily("cargohold_volume_last_backup_duration_seconds",
                                          "How long the volume's last successful backup took.", labels=["volume"])
        protection = GaugeMetricFamily("cargohold_volume_protection",
                                       "1 for the volume's protection state (as on its page), 0 for the others.",
                                       labels=["volume", "state"])
        names = []
        for name, size_bytes in Volume.objects.present().values_list("name", "size_bytes"):
            names.append(name)
            if size_bytes is not None:
                size.add_metric([name], size_bytes)
        # The latest successful backup of each volume (an import under its name protects nothing).
        latest = (Backup.objects.filter(volume_name__in=names, status=Backup.Status.SUCCEEDED)
                  .exclude(origin=Backup.Origin.IMPORTED).order_by().values("volume_name")
                  .annotate(last=Max("pk")).values_list("last", flat=True))
        for backup in Backup.objects.filter(pk__in=list(latest)).only(
                "volume_name", "size_bytes", "started_at", "job__finished_at"):
            if backup.finished_at is not None:
                age.add_metric([backup.volume_name], max(0.0, (now - backup.finished_at).total_seconds()))
            if backup.size_bytes is not None:
                last_size.add_metric([backup.volume_name], backup.size_bytes)
            if backup.duration is not None:
                last_duration.add_metric([backup.volume_name], backup.duration.total_seconds())
        for name, state in sorted((p.volume, p.state) for p in protection_all(now=now).values()):
            for candidate in PROTECTION_STATES:
                protection.add_metric([name, candidate], 1 if candidate == state else 0)
        yield from (size, age, last_size, last_duration, protection)

    def _jobs(self):
        ended = CounterMetricFamily("cargohold_jobs", "Jobs that ended, by kind and outcome.",
                                    labels=["kind", "outcome"])
        active = GaugeMetricFamily("cargohold_jobs_active", "Jobs queued or running now.",
                                   labels=["kind", "status"])
        durations = SummaryMetricFamily("cargohold_job_duration_seconds",
                                        "Run time of ended jobs (from a worker taking them to their end).",
                                        labels=["kind", "outcome"])
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        rows = (Job.objects.order_by().values("kind", "status")
                .annotate(n=Count("pk")).values_list("kind", "status", "n"))
        for kind, status, n in rows:
            (active if status in Job.ACTIVE else ended).add_metric([kind, status], n)
        timed = (Job.objects.filter(status__in=ENDED, started_at__isnull=False, finished_at__isnull=False)
                 .order_by().values("kind", "status").annotate(n=Count("pk"), total=Sum(took))
                 .values_list("kind", "status", "n", "total"))
        for kind, status, n, total in timed:
            durations.add_metric([kind, status], count_value=n, sum_value=total.total_seconds() if total else 0.0)
        yield from (ended, active, durations)

    def _queues(self):
        depth = GaugeMetricFamily("cargohold_queue_depth", "Messages waiting in a Celery queue (Redis).",
                                  labels=["queue"])
        up = GaugeMetricFamily("cargohold_redis_up", "1 when Redis answered this scrape.")
        try:
            import redis

            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
            for queue in settings.METRICS_QUEUES:
                with client.pipeline() as pipe:
                    for suffix in PRIORITY_SUFFIXES:
                        pipe.llen(queue + suffix)
                    depth.add_metric([queue], sum(pipe.execute()))
            up.add_metric([], 1)
        except Exception:  # Redis down: say so, and still answer the rest
            up.add_metric([], 0)
        yield from (depth, up)

    def _engine(self):
        status = EngineStatus.of_default()
        reachable = GaugeMetricFamily("cargohold_engine_reachable",
                                      "1 when the last engine sync succeeded recently (the page banner's rule).")
        reachable.add_metric([], 0 if engine_problem(status) else 1)
        yield reachable
        if status is not None and status.last_success_at is not None:
            synced = GaugeMetricFamily("cargohold_engine_last_sync_timestamp_seconds",
                                       "When the last engine sync succeeded (Unix time).")
            synced.add_metric([], status.last_success_at.timestamp())
            yield synced
        yield from self._hosts()

    def _hosts(self):
        """Per host: its worker online (the Hosts page's rule), its engine's last good sync."""
        from hosts.models import Host

        online = GaugeMetricFamily("cargohold_host_online", "1 while the host's worker reports its heartbeat.",
                                   labels=["host"])
        heartbeat = GaugeMetricFamily("cargohold_host_last_heartbeat_timestamp_seconds",
                                      "When the host's worker last reported (Unix time).", labels=["host"])
        synced = GaugeMetricFamily("cargohold_host_last_sync_timestamp_seconds",
                                   "When the last sync of the host's engine succeeded (Unix time).", labels=["host"])
        for host in Host.objects.select_related("engine_status").order_by("name"):
            online.add_metric([host.name], 1 if host.online else 0)
            if host.heartbeat_at:
                heartbeat.add_metric([host.name], host.heartbeat_at.timestamp())
            status = getattr(host, "engine_status", None)
            if status is not None and status.last_success_at:
                synced.add_metric([host.name], status.last_success_at.timestamp())
        yield from (online, heartbeat, synced)
