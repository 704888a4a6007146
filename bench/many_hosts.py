"""Many hosts, one dashboard: pages, the mirror sync and the scheduler tick at scale (issue 16).

Two runs in one invocation, each on a throw-away database of its own (the dev database is
not touched):

- baseline: 1 host, 100 volumes, 30 containers;
- scale: 10 hosts x 1,000 volumes and 300 containers each (10,000 volumes, 3,000
  containers with volume, bind and tmpfs mounts), backups per volume, restores, policies
  with their runs, a team with rules, usage samples and an audit trail.

The mirror is filled the way a worker fills it: each host's synthetic engine listing goes
through `volumes.services.mirror_sync` with CARGOHOLD_WORKER_HOST set to that host and the
engine calls answered from the listing (only the engine is replaced; every database write
is the real sync's). Then it prints:

1. each page (/, /volumes/, /volumes/?host=, /containers/, /backups/, /restores/,
   /policies/, /risks/, /graph/, /graph/?host=, /audit/, /hosts/, /api/v1/volumes/):
   median and p95 ms over N requests through Django's test client (the whole request
   cycle minus the network) and the number of SQL queries, as a global Admin and as a
   team-scoped Operator, baseline vs scale (a query count that grows with the rows is an
   N+1); then the overview and the risks page with the cache emptied before each request
   ("cold": the first view ever; "after a restart": the process's cache emptied, the last
   figures still in the database), and the overview after a change to one volume's size
   (the page, and the htmx recount it asks for when it showed the last figures stale;
   the timing includes the one-row UPDATE);
2. the sync cost per host (the database part of mirror_sync): a sync with no change and
   one with 1 % of the volumes, containers and mounts changed, median ms;
3. the scheduler tick (policies.monitoring.policies_check, what beat's check_policies
   runs) with 50 policies over the mirror: first tick and median of the next ones.

    .venv/bin/python bench/many_hosts.py [--requests 20] [--hosts 10] [--volumes 1000] [--containers 300]
                                    [--backups 3] [--sync-runs 5] [--database-url postgres://…] [--pages-only]
                                    [--profile PAGE [--warm]] [--no-gc-freeze]

`--database-url` names a PostgreSQL *server* (any database on it, e.g. the tests' server:
`--database-url "$(cat var/postgres/test-url)"`, written by scripts/postgres.sh): the bench
creates a database of its own there for each run and drops it afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

from _django import summary, timings

TARGET_P95_MS = 150
PAGES = [
    "/", "/volumes/", "/volumes/?host={host}", "/containers/", "/backups/", "/restores/", "/policies/",
    "/risks/", "/graph/", "/graph/?host={host}", "/audit/", "/hosts/", "/api/v1/volumes/",
]
# The whole-catalogue pages again with Django's cache emptied before each request: what the
# first request after a change costs (insights.snapshot keeps the figures between changes).
COLD = {"/ (cold)": "/", "/risks/ (cold)": "/risks/"}
# The overview after a change in a web process that has just started: its own cache empty,
# the last figures in the database's (`figures`).
RESTARTED = {"/ (after a restart)": "/"}
# The overview after a change (one volume's size), as a user sees it: the page (the last
# figures, marked stale, when counting them is slow: insights.snapshot.counted) and the
# recount its htmx then asks for.
AFTER_CHANGE = {"/ (after a change)": ("/", {}), "/ recount (after a change)": ("/?recount=1", {"HTTP_HX_REQUEST": "true"})}
TIERS = ("db", "web", "cache")


# --- the synthetic engines ---------------------------------------------------------------


def host_names(n_hosts: int) -> list[str]:
    from hosts import refs

    return [refs.default_host_name()] + [f"h{i:02d}" for i in range(1, n_hosts)]


def listing(host_index: int, host: str, n_volumes: int, n_containers: int):
    """What `docker volume ls` / `docker ps -a` of one engine would give (as the adapter
    returns it: references, not the engine's names)."""
    from django.utils import timezone

    from hosts import refs
    from volumes.engine import EngineContainer, EngineMount, EngineVolume

    rng = random.Random(1000 + host_index)
    now = timezone.now()
    n_projects = max(1, n_containers // 10)
    volumes = []
    for i in range(n_volumes):
        project = f"p{i % n_projects}"
        anonymous = i % 5 == 0
        name = f"{host_index:04x}{i:060x}" if anonymous else f"{project}_data{i}"
        labels = {} if anonymous else {"com.docker.compose.project": project, "tier": TIERS[i % 3]}
        if i % 10 == 3:
            labels["team"] = "shop"
        if i % 50 == 1:
            labels["cargohold.protect"] = "true"
        volumes.append(EngineVolume(name=refs.make_ref(host, name), driver="local",
                                    mountpoint=f"/var/lib/docker/volumes/{name}/_data", scope="local",
                                    options={}, labels=labels, created_at=now - timedelta(days=i % 90)))
    used = volumes[: int(len(volumes) * 0.6)]  # about 60 % mounted, some by several containers
    containers = []
    for i in range(n_containers):
        project = f"p{i % n_projects}"
        mounts = [EngineMount(kind="volume", source=refs.split_ref(v.name)[1], destination=f"/data{j}",
                              read_only=rng.random() < 0.3, volume_name=v.name)
                  for j, v in enumerate(rng.sample(used, k=min(len(used), rng.randint(1, 3))))]
        mounts.append(EngineMount(kind="bind", source="/etc/localtime", destination="/etc/localtime", read_only=True))
        if i % 25 == 0:
            mounts.append(EngineMount(kind="bind", source="/var/run/docker.sock", destination="/var/run/docker.sock",
                                      read_only=False))
        labels = {"com.docker.compose.project": project, "com.docker.compose.service": f"svc{i}"} if i % 10 else {}
        containers.append(EngineContainer(
            id=f"{host_index:04x}{i:060x}", name=f"{project}-svc{i}-1", image="postgres:16",
            state="running" if i % 7 else "exited", status="Up 2 hours" if i % 7 else "Exited (0) 1 hour ago",
            labels=labels, created_at=now - timedelta(days=i % 30), mounts=tuple(mounts)))
    return volumes, containers


def changed_listing(volumes, containers, step: int):
    """The same engine with 1 % of it changed: relabelled volumes, containers restarted
    with another mount, a few volumes and containers gone and new ones."""
    import dataclasses

    from volumes.engine import EngineMount

    volumes, containers = list(volumes), list(containers)
    n_v, n_c = max(1, len(volumes) // 100), max(1, len(containers) // 100)
    for k in range(n_v):
        i = (step * 37 + k * 97) % len(volumes)
        v = volumes[i]
        volumes[i] = dataclasses.replace(v, labels={**v.labels, "bench.step": str(step)})
    volumes = volumes[: len(volumes) - 1] + [dataclasses.replace(volumes[-1], name=volumes[-1].name + f"-s{step}")]
    for k in range(n_c):
        i = (step * 13 + k * 89) % len(containers)
        c = containers[i]
        extra = EngineMount(kind="bind", source=f"/srv/step{step}", destination="/srv", read_only=True)
        containers[i] = dataclasses.replace(c, state="exited" if c.state == "running" else "running",
                                            mounts=c.mounts[1:] + (extra,))
    return volumes, containers


@contextmanager
def fake_engine(volumes, containers):
    """The engine calls of mirror_sync answered from a listing: the database side is real."""
    from volumes import engine
    from volumes.engine import EngineInfo

    info = EngineInfo(id="bench", host_name="bench", server_version="24.0.7", api_version="1.43",
                      storage_driver="overlay2", docker_root_dir="/var/lib/docker", volume_plugins=("local",),
                      containers=len(containers), images=10)
    with mock.patch.object(engine, "list_volumes", return_value=volumes), \
            mock.patch.object(engine, "list_containers", return_value=containers), \
            mock.patch.object(engine, "info", return_value=info), \
            mock.patch.object(engine, "container_tmpfs",
                              side_effect=lambda cid: {"/run": "rw,noexec"} if int(cid[-1], 16) % 3 == 0 else {}):
        yield


@contextmanager
def worker_of(host: str):
    """This process as the worker of `host` (what host_worker --host sets)."""
    before = os.environ.get("CARGOHOLD_WORKER_HOST")
    os.environ["CARGOHOLD_WORKER_HOST"] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CARGOHOLD_WORKER_HOST", None)
        else:
            os.environ["CARGOHOLD_WORKER_HOST"] = before


def sync_host(host: str, volumes, containers):
    from volumes.services import mirror_sync

    with worker_of(host), fake_engine(volumes, containers):
        return mirror_sync()


# --- the rest of the catalogue -----------------------------------------------------------


def fill(n_hosts: int, n_volumes: int, n_containers: int, n_backups: int, n_policies: int, days: int) -> dict:
    """The mirror of every host through the real sync, then backups, restores, policies,
    a team, samples and the audit trail. Returns the listings (for the sync bench)."""
    from django.contrib.auth import get_user_model
    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from accounts.models import AuditEvent, Team, TeamMembership, TeamRule
    from backups.models import Backup
    from hosts.models import Host
    from insights.models import VolumeUsageSample
    from jobs.models import Job
    from policies.models import BackupPolicy, PolicyRun
    from restores.models import Restore
    from volumes.models import Volume

    rng = random.Random(11)
    now = timezone.now()
    names = host_names(n_hosts)
    listings = {}
    for index, host in enumerate(names):
        Host.objects.update_or_create(name=host, defaults={"heartbeat_at": now, "worker_started_at": now,
                                                           "worker_name": f"celery@{host}"})
        listings[host] = listing(index, host, n_volumes, n_containers)
        sync_host(host, *listings[host])
    volumes = list(Volume.objects.order_by("pk").only("pk", "name", "host_id"))
    Volume.objects.update(size_bytes=10**9, size_measured_at=now)

    admin = get_user_model().objects.create_superuser("bench", password="bench-pass-1")
    operator = get_user_model().objects.create_user("bench-operator", password="bench-pass-1")
    team = Team.objects.create(name="shop")
    TeamRule.objects.create(team=team, kind=TeamRule.Kind.LABEL, value="team=shop")
    TeamRule.objects.create(team=team, kind=TeamRule.Kind.COMPOSE, value="p3")
    TeamMembership.objects.create(team=team, user=operator, role=TeamMembership.Role.OPERATOR)
    Team.objects.create(name="data")
    TeamRule.objects.create(team=Team.objects.get(name="data"), kind=TeamRule.Kind.LABEL, value="tier=db")

    # Backups: n per volume, a day apart; the newest of one volume in 20 failed.
    host_of = dict(Host.objects.values_list("pk", "name"))
    jobs, backups = [], []
    for v in volumes:
        for k in range(n_backups):
            failed = k == 0 and v.pk % 20 == 0
            at = now - timedelta(days=k, minutes=v.pk % 600)
            jobs.append(Job(kind="backup", status=Job.Status.FAILED if failed else Job.Status.SUCCEEDED,
                            target_type="volume", target=v.name, host=host_of[v.host_id], started_at=at,
                            finished_at=at + timedelta(seconds=30), trigger="schedule",
                            error="disk full" if failed else "", created_by=admin))
    Job.objects.bulk_create(jobs, batch_size=1000)
    jobs = list(Job.objects.filter(kind="backup").order_by("pk"))
    for j, (v, k) in zip(jobs, ((v, k) for v in volumes for k in range(n_backups))):
        ok = j.status == Job.Status.SUCCEEDED
        backups.append(Backup(job=j, volume_id=v.pk, volume_name=v.name, origin=Backup.Origin.SCHEDULE,
                              key=f"{v.name.replace(':', '/')}/{j.pk}.tar.zst" if ok else "",
                              bytes_read=10**9 if ok else 0, size_bytes=4 * 10**8 if ok else None,
                              data_bytes=10**9 if ok else None, file_count=1200 if ok else None,
                              sha256="0" * 64 if ok else "", started_at=j.started_at,
                              manifest={"format": 1, "volume": {"name": v.name}} if ok else {}))
    Backup.objects.bulk_create(backups, batch_size=1000)
    Backup.objects.update(created_at=Subquery(Job.objects.filter(pk=OuterRef("job_id")).values("started_at")[:1]))

    # Restores: one volume in 20, from its newest good backup, into a new volume.
    newest = {}
    for pk, vid in Backup.objects.filter(status=Job.Status.SUCCEEDED).order_by("created_at").values_list("pk", "volume_id"):
        newest[vid] = pk
    restore_jobs = [Job(kind="restore", status=Job.Status.SUCCEEDED, target_type="volume", target=v.name + "-copy",
                        host=host_of[v.host_id], started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=1),
                        created_by=admin) for v in volumes[::20] if v.pk in newest]
    Job.objects.bulk_create(restore_jobs, batch_size=1000)
    restore_jobs = list(Job.objects.filter(kind="restore").order_by("pk"))
    Restore.objects.bulk_create(
        [Restore(job=j, backup_id=newest[v.pk], backup_label=f"backup #{newest[v.pk]}", mode=Restore.Mode.NEW,
                 volume_name=v.name + "-copy", phase="done", outcome="Restored into a new volume.")
         for j, v in zip(restore_jobs, [v for v in volumes[::20] if v.pk in newest])],
        batch_size=1000,
    )

    policies_add(n_policies)
    # Each policy's runs: the covered volumes' scheduled backups are its runs.
    policies = list(BackupPolicy.objects.order_by("pk"))
    runs = []
    from policies.selectors import policy_volumes

    covered = {p.pk: {row["name"] if isinstance(row, dict) else row.name for row in policy_volumes(policy=p)}
               for p in policies}
    for b in Backup.objects.order_by("pk").only("pk", "volume_name", "job_id", "created_at"):
        for p in policies:
            if b.volume_name in covered[p.pk]:
                runs.append(PolicyRun(policy=p, volume_name=b.volume_name, job_id=b.job_id, backup_id=b.pk,
                                      backup_ref=b.pk, scheduled_for=b.created_at, notified=True,
                                      prune_state=PolicyRun.Prune.DONE))  # old runs: pruned after long ago
                break
    PolicyRun.objects.bulk_create(runs, batch_size=1000)
    BackupPolicy.objects.update(schedule_checked_until=now, schedule_since=now - timedelta(days=30))

    samples = []
    for v in volumes:
        growth = rng.randrange(10**7)
        samples += [VolumeUsageSample(volume_id=v.pk, at=now - timedelta(days=d), size_bytes=10**9 - growth * d)
                    for d in range(days)]
    VolumeUsageSample.objects.bulk_create(samples, batch_size=5000)
    AuditEvent.objects.bulk_create(
        [AuditEvent(actor=admin, actor_name="bench", action=("backup.start", "volume.create", "restore.start")[i % 3],
                    object_type="volume", object_name=v.name, params={"bench": True})
         for v in volumes for i in range(2)],
        batch_size=1000,
    )
    return listings


def policies_add(total: int) -> None:
    """Policies up to `total`: label, Compose and per-tier selections over every host."""
    from policies.models import BackupPolicy

    have = BackupPolicy.objects.count()
    kinds = [("label", "tier=db"), ("label", "tier=web"), ("compose", "p1"), ("label", "team=shop"),
             ("compose", "p7"), ("label", "cargohold.protect")]
    more = [("label", f"tier={TIERS[i % 3]}") if i % 2 else ("compose", f"p{i % 30}") for i in range(total)]
    BackupPolicy.objects.bulk_create([
        BackupPolicy(name=f"bench-{i}", selector_kind=(kinds + more)[i][0], selector_value=(kinds + more)[i][1],
                     cron=("0 3 * * *", "0 */6 * * *", "30 1 * * 0")[i % 3], keep_last=7, keep_daily=7)
        for i in range(have, total)
    ])


# --- measuring ---------------------------------------------------------------------------


def measure_pages(clients: dict, host: str, n: int) -> dict:
    from django.core.cache import cache, caches
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from django.db.models import F

    from volumes.models import Volume

    def change():
        Volume.objects.filter(pk=Volume.objects.order_by("pk").values("pk")[:1]).update(size_bytes=F("size_bytes") + 1)

    out = {}
    for who, client in clients.items():
        for page in PAGES + list(COLD) + list(RESTARTED) + list(AFTER_CHANGE):
            url, headers = AFTER_CHANGE.get(page) or (COLD.get(page) or RESTARTED.get(page) or page.format(host=host), {})
            reset_queries()  # the log is a bounded deque: a full one would capture nothing
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, **headers)
            n_queries = len(queries)  # now: the next request's reset_queries empties the log
            if response.status_code == 403 and who != "Admin":  # not this role's page (the audit trail)
                out[(who, page)] = None
                continue
            assert response.status_code == 200, (who, url, response.status_code)
            if page in COLD:  # nothing kept at all: the first view ever
                med, p95 = summary(timings(
                    lambda client=client, url=url: (cache.clear(), caches["figures"].clear(), client.get(url)), n))
            elif page in RESTARTED:
                client.get(url)  # counted once: its last figures are in the database
                med, p95 = summary(timings(lambda client=client, url=url: (change(), cache.clear(), client.get(url)), n))
            elif page in AFTER_CHANGE:
                client.get(url, **headers)  # counted once: its cost decides whether the next one may be stale
                med, p95 = summary(timings(lambda client=client, url=url: (change(), client.get(url, **headers)), n))
            else:
                med, p95 = summary(timings(lambda client=client, url=url: client.get(url), n))
            out[(who, page)] = (med, p95, n_queries)
    return out


def profile_page(clients: dict, host: str, page: str, warm: bool = False) -> None:
    """`--profile PAGE`: one cold request of PAGE (cache emptied; `--warm`: not) per user
    under cProfile, printed: the 25 costliest functions (cumulative) and the 10 slowest
    SQL queries."""
    import cProfile
    import pstats

    from django.core.cache import cache, caches
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    url = page.format(host=host)
    for who, client in clients.items():
        client.get(url)  # imports and the first-request set-up out of the profile
        if not warm:
            cache.clear(), caches["figures"].clear()
        reset_queries()
        profiler = cProfile.Profile()
        with CaptureQueriesContext(connection) as queries:
            t = time.perf_counter()
            profiler.runcall(client.get, url)
            ms = (time.perf_counter() - t) * 1000
        print(f"\n==> {who} {url}: {ms:.0f} ms under the profiler, {len(queries)} queries, "
              f"{sum(float(q['time']) for q in queries) * 1000:.0f} ms of them in SQL")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
        for q in sorted(queries, key=lambda q: -float(q["time"]))[:10]:
            print(f"{float(q['time']) * 1000:8.1f} ms  {q['sql'][:400]}")


def measure_sync(listings: dict, runs: int) -> dict:
    """Per host: median ms of mirror_sync with nothing changed, and with 1 % changed
    (alternating between the listing and a changed one, so each run changes 1 %)."""
    out = {}
    for host, (volumes, containers) in listings.items():
        quiet = []
        for _ in range(runs):
            t = time.perf_counter()
            result = sync_host(host, volumes, containers)
            quiet.append((time.perf_counter() - t) * 1000)
            assert not result.changed, (host, str(result))
        busy = []
        for step in range(runs):
            changed = changed_listing(volumes, containers, step)
            for listing_ in (changed, (volumes, containers)):
                t = time.perf_counter()
                result = sync_host(host, *listing_)
                busy.append((time.perf_counter() - t) * 1000)
                assert result.changed, host
        out[host] = (statistics.median(quiet), statistics.median(busy))
    return out


def measure_tick(n_policies: int, runs: int) -> tuple[float, float, int]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from policies import monitoring
    from policies.models import BackupPolicy

    policies_add(n_policies)
    BackupPolicy.objects.update(schedule_checked_until=timezone.now() - timedelta(hours=1))
    t = time.perf_counter()
    monitoring.policies_check()
    first = (time.perf_counter() - t) * 1000
    ms = []
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        monitoring.policies_check()
    n_queries = len(queries)
    for _ in range(runs):
        t = time.perf_counter()
        monitoring.policies_check()
        ms.append((time.perf_counter() - t) * 1000)
    return first, statistics.median(ms), n_queries


def run(label: str, args, *, n_hosts, n_volumes, n_containers, n_backups, n_policies, profile="") -> dict:
    """One run in a child process of its own (Django is set up once per process, on its
    own database): prints nothing, returns its figures as a dict through a JSON file."""
    import json
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="cargohold-bench-", suffix=".json", delete=False) as out:
        pass  # the child writes it
    cmd = [sys.executable, __file__, "--child", out.name, "--hosts", str(n_hosts), "--volumes", str(n_volumes),
           "--containers", str(n_containers), "--backups", str(n_backups), "--policies", str(n_policies),
           "--requests", str(args.requests), "--sync-runs", str(args.sync_runs), "--days", str(args.days),
           "--tick-policies", str(args.tick_policies)] + (["--pages-only"] if args.pages_only else []) + (
               ["--no-gc-freeze"] if args.no_gc_freeze else [])
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    if profile:
        cmd += ["--profile", profile] + (["--warm"] if args.warm else [])
    print(f"==> {label}: {n_hosts} host(s) x {n_volumes} volumes / {n_containers} containers ...", flush=True)
    subprocess.run(cmd, check=True)
    if profile:  # the child printed its profile and wrote no figures
        os.unlink(out.name)
        return {}
    with open(out.name) as f:
        data = json.load(f)
    os.unlink(out.name)
    return data


@contextmanager
def own_database(server_url: str):
    """A database of its own on the PostgreSQL server of `server_url`, dropped afterwards."""
    if not server_url:
        yield ""
        return
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(server_url)
    name = f"cargohold_bench_{os.getpid()}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child(args) -> None:
    import json

    from _django import setup_scratch_django

    warnings.filterwarnings("ignore", message="No directory at")
    logging.disable(logging.WARNING)
    with own_database(args.database_url) as url:
        scratch = setup_scratch_django(url)
        try:
            from django.contrib.auth import get_user_model
            from django.db import connection
            from django.test import Client

            from backups.models import Backup
            from volumes.models import Container, Mount, Volume

            t = time.perf_counter()
            listings = fill(args.hosts, args.volumes, args.containers, args.backups, args.policies, args.days)
            fill_s = time.perf_counter() - t
            clients = {}
            for who, username in (("Admin", "bench"), ("Operator (team)", "bench-operator")):
                c = Client()
                c.force_login(get_user_model().objects.get(username=username))
                clients[who] = c
            # The fill's objects stay alive here (the synthetic engine listings, for the sync
            # part) and Python's collector scanned them during the page requests: p95s of
            # 150-300 ms on pages whose median is 20-70 ms, at the baseline too. A web process
            # holds no such objects: they are frozen out of the collector. --no-gc-freeze: not.
            if not args.no_gc_freeze:
                import gc

                gc.collect()
                gc.freeze()
            host = host_names(args.hosts)[-1]
            if args.profile:
                return profile_page(clients, host, args.profile, warm=args.warm)
            pages = measure_pages(clients, host, args.requests)
            sync = {} if args.pages_only else measure_sync(listings, args.sync_runs)
            tick = None if args.pages_only else measure_tick(args.tick_policies, args.sync_runs)
            data = {
                "vendor": connection.vendor, "fill_s": fill_s,
                "counts": {"volumes": Volume.objects.count(), "containers": Container.objects.count(),
                           "mounts": Mount.objects.count(), "backups": Backup.objects.count()},
                "pages": {f"{who}|{page}": v for (who, page), v in pages.items()},
                "sync": sync, "tick": tick,
            }
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    with open(args.child, "w") as f:
        json.dump(data, f)


def report(base: dict, big: dict, args) -> None:
    print(f"\nDatabase: {big['vendor']}. Baseline: {base['counts']}, filled in {base['fill_s']:.1f} s; "
          f"scale: {big['counts']}, filled in {big['fill_s']:.1f} s.")
    print(f"\n1. Pages, server-side ms over {args.requests} requests (Django test client), SQL queries per "
          f"request; goal: p95 under {TARGET_P95_MS} ms")
    print(f"{'user':16} {'page':22} {'base med':>8} {'base p95':>8} {'base q':>6} {'med':>8} {'p95':>8} "
          f"{'q':>5} {'ratio':>6} {'goal':>5}")
    for key, figures in big["pages"].items():
        who, page = key.split("|", 1)
        if figures is None:
            print(f"{who:16} {page.replace('{host}', '…'):22} (403: not this role's page)")
            continue
        med, p95, q = figures
        bmed, bp95, bq = base["pages"].get(key) or (float("nan"),) * 3
        ok = "ok" if p95 < TARGET_P95_MS else "MISS"
        print(f"{who:16} {page.replace('{host}', '…'):22} {bmed:8.1f} {bp95:8.1f} {bq:6.0f} {med:8.1f} {p95:8.1f} "
              f"{q:5d} {med / bmed:6.2f} {ok:>5}")
    if args.pages_only:
        return
    print(f"\n2. Mirror sync, database part (mirror_sync with the engine's listing given), median ms of "
          f"{args.sync_runs} (no change) and {2 * args.sync_runs} (1 % changed) syncs")
    print(f"{'host':8} {'volumes':>8} {'no change':>10} {'1 % changed':>12}")
    for host, (quiet, busy) in base["sync"].items():
        print(f"{host + ' (b)':8} {base['counts']['volumes']:8d} {quiet:10.1f} {busy:12.1f}")
    for host, (quiet, busy) in big["sync"].items():
        print(f"{host:8} {args.volumes:8d} {quiet:10.1f} {busy:12.1f}")
    quiet = [q for q, _ in big["sync"].values()]
    busy = [b for _, b in big["sync"].values()]
    print(f"{'median':8} {'':8} {statistics.median(quiet):10.1f} {statistics.median(busy):12.1f}")
    print(f"\n3. Scheduler tick (policies_check, as beat's check_policies runs it) with {args.tick_policies} policies: "
          f"first tick, then median of {args.sync_runs}; SQL queries per tick")
    for label, data in (("baseline", base), ("scale", big)):
        first, med, q = data["tick"]
        print(f"{label:8} first {first:8.1f} ms   then {med:8.1f} ms   {q} queries")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--volumes", type=int, default=1000, help="per host")
    parser.add_argument("--containers", type=int, default=300, help="per host")
    parser.add_argument("--backups", type=int, default=3, help="per volume")
    parser.add_argument("--policies", type=int, default=10, help="while the pages are measured")
    parser.add_argument("--tick-policies", type=int, default=50)
    parser.add_argument("--days", type=int, default=8, help="daily usage samples per volume")
    parser.add_argument("--sync-runs", type=int, default=5)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server to run on (a database of its own)")
    parser.add_argument("--pages-only", action="store_true",
                        help="only part 1 (the pages, warm and cold): no sync or scheduler tick figures")
    parser.add_argument("--profile", metavar="PAGE",
                        help="no figures: one cold request of PAGE (e.g. / or /risks/) at scale under cProfile, "
                             "its costliest functions and slowest queries")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="leave the fill's objects to the collector while the pages are measured")
    parser.add_argument("--warm", action="store_true", help="with --profile: a second request, the cache kept")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.profile:
        run("scale", args, n_hosts=args.hosts, n_volumes=args.volumes, n_containers=args.containers,
            n_backups=args.backups, n_policies=args.policies, profile=args.profile)
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    base = run("baseline", args, n_hosts=1, n_volumes=100, n_containers=30, n_backups=args.backups, n_policies=3)
    big = run("scale", args, n_hosts=args.hosts, n_volumes=args.volumes, n_containers=args.containers,
              n_backups=args.backups, n_policies=args.policies)
    print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(base, big, args)


if __name__ == "__main__":
    main()
