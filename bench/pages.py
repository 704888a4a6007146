"""Server-side time of the overview, the sharing graph and a volume page; sampler cost.

Fills a scratch database (the dev database is not touched) with N volumes (default
1,000), M containers (default 300) in Compose projects with volume, bind and tmpfs
mounts, and D days (default 30) of usage samples as the thinning leaves them (every
10 minutes for 48 h, hourly to a week, daily after). Times `/`, its htmx poll,
`/graph/`, the graph's unchanged poll (204), a filtered graph, `/risks/` and a volume
page with its chart through Django's test client (the whole request cycle minus the
network): median and p95 over 50 requests, against a baseline of 10 volumes /
3 containers / 1 day. Then the sampler: its database side with the big mirror, the
thinning over the big table, and a real run against the Docker Engine of this host.

    .venv/bin/python bench/pages.py [--volumes 1000] [--containers 300] [--days 30] [--requests 50]
                                    [--engine-volumes 20] [--files 200] [--no-engine]
"""

import argparse
import logging
import os
import random
import shutil
import statistics
import subprocess
import time
import warnings
from datetime import timedelta

from _django import setup_scratch_django, summary, timings

TARGET_MS = 250
HELPER_IMAGE = os.environ.get("CARGOHOLD_HELPER_IMAGE", "busybox:stable")


def fill(n_volumes: int, n_containers: int, days: int, prefix: str) -> None:
    from django.utils import timezone

    from insights.models import VolumeUsageSample
    from jobs.models import Job
    from hosts.models import default_host
    from volumes.models import Container, EngineStatus, Mount, Volume

    rng = random.Random(7)
    now = timezone.now()
    EngineStatus.objects.update_or_create(host=default_host(), defaults={
        "last_success_at": now, "storage_driver": "overlay2", "docker_root_dir": "/var/lib/docker",
        "server_version": "20.10.24", "host_name": "bench", "sizes_measured_at": now,
    })
    n_projects = max(1, n_containers // 10)
    volumes = []
    for i in range(n_volumes):
        anonymous = i % 5 == 0
        project = f"{prefix}p{i % n_projects}"
        name = f"{prefix}{i:060x}" if anonymous else f"{project}_data{i}"
        labels = {} if anonymous else {"com.docker.compose.project": project}
        if i % 50 == 1:
            labels["cargohold.protect"] = "true"
        volumes.append(Volume(name=name, anonymous=anonymous, labels=labels, size_bytes=rng.randrange(10**10),
                              size_measured_at=now, created_at=now, last_seen_at=now, search_text=name))
    Volume.objects.bulk_create(volumes, batch_size=500)
    volumes = list(Volume.objects.filter(name__startswith=prefix).order_by("pk"))
    containers = Container.objects.bulk_create(
        [Container(engine_id=f"{prefix}{i:058x}", name=f"{prefix}p{i % n_projects}-svc{i}-1", image="postgres:16",
                   state="running" if i % 7 else "exited", compose_project=f"{prefix}p{i % n_projects}" if i % 10 else "",
                   compose_service=f"svc{i}", size_rw=rng.randrange(3 * 10**8), last_seen_at=now)
         for i in range(n_containers)],
        batch_size=500,
    )
    # About 60 % of the volumes are mounted (some by several containers), the rest unused.
    used = volumes[: int(len(volumes) * 0.6)]
    mounts = []
    for i, c in enumerate(containers):
        for j, v in enumerate(rng.sample(used, k=min(len(used), rng.randint(1, 3)))):
            mounts.append(Mount(container=c, kind="volume", volume=v, source=v.name, destination=f"/data{j}",
                                read_only=rng.random() < 0.3))
        mounts.append(Mount(container=c, kind="bind", source="/etc/localtime", destination="/etc/localtime", read_only=True))
        if i % 25 == 0:
            mounts.append(Mount(container=c, kind="bind", source="/var/run/docker.sock", destination="/var/run/docker.sock"))
        if i % 3 == 0:
            mounts.append(Mount(container=c, kind="tmpfs", destination="/tmp"))
    Mount.objects.bulk_create(mounts, batch_size=1000)
    # The samples the thinning leaves: 10-minute ones for 48 h, hourly to 7 days, daily after.
    times = [now - timedelta(minutes=10 * k) for k in range(min(days * 144, 288))]
    times += [now - timedelta(hours=h) for h in range(49, min(days, 7) * 24 + 1)]
    times += [now - timedelta(days=d) for d in range(8, days + 1)]
    batch = []
    for v in volumes:
        growth = rng.randrange(10**7)
        for at in times:
            age_days = (now - at).total_seconds() / 86400
            batch.append(VolumeUsageSample(volume_id=v.pk, at=at, size_bytes=max(0, v.size_bytes - int(growth * age_days))))
        if len(batch) >= 20000:
            VolumeUsageSample.objects.bulk_create(batch, batch_size=5000)
            batch = []
    VolumeUsageSample.objects.bulk_create(batch, batch_size=5000)
    Job.objects.bulk_create([Job(kind="backup", status=Job.Status.FAILED, target=v.name, error="disk full",
                                 finished_at=now) for v in volumes[:20]])


def measure(client, urls: dict[str, tuple[str, dict, int]], n: int) -> dict[str, tuple[float, float]]:
    out = {}
    for label, (url, headers, status) in urls.items():
        response = client.get(url, headers=headers)
        assert response.status_code == status, (url, response.status_code)
        out[label] = summary(timings(lambda: client.get(url, headers=headers), n))
    return out


def urls(prefix: str) -> dict[str, tuple[str, dict, int]]:
    from insights.selectors import mirror_version
    from volumes.models import Mount

    htmx = {"HX-Request": "true"}
    name = Mount.objects.filter(volume__name__startswith=prefix).order_by("volume__name").first().volume.name
    project = f"{prefix}p1"
    return {
        "/ (overview)": ("/", {}, 200),
        "/ (htmx poll)": ("/", htmx, 200),
        "/graph/": ("/graph/", {}, 200),
        "/graph/ (poll, unchanged)": (f"/graph/?v={mirror_version()}", htmx, 204),
        "/graph/?project=…": (f"/graph/?project={project}", {}, 200),
        "/risks/": ("/risks/", {}, 200),
        "/volumes/<name>/ (month)": (f"/volumes/{name}/?range=month", {}, 200),
        "usage chart (week, htmx)": (f"/insights/volumes/{name}/usage/?range=week", htmx, 200),
    }


def make_engine_volumes(n: int, files: int) -> list[str]:
    """Real volumes with `files` files of 10 kB each, so the engine's walk has work to do."""
    names = [f"cargohold-bench-{os.getpid()}-{i}" for i in range(n)]
    for name in names:
        subprocess.run(["docker", "volume", "create", "--label", "cargohold.bench=1", name], check=True,
                       capture_output=True)
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--label", "cargohold.bench=1",
                        "-v", f"{name}:/data", HELPER_IMAGE, "sh", "-c",
                        f"for i in $(seq {files}); do head -c 10000 /dev/urandom > /data/f$i; done"],
                       check=True, capture_output=True)
    return names


def remove_engine_volumes(names: list[str]) -> None:
    if names:
        subprocess.run(["docker", "volume", "rm", "-f", *names], capture_output=True)


def bench_sampler(engine_volumes: int, files: int) -> None:
    """The sampler's database side with the big mirror, the thinning, then the real engine."""
    from django.utils import timezone

    from insights.models import VolumeUsageSample
    from insights.services import usage_sample, usage_thin
    from volumes.models import EngineStatus, Volume
    from volumes.services import mirror_sync

    rows = VolumeUsageSample.objects.count()
    t = time.perf_counter()
    dropped = usage_thin()
    thin_ms = (time.perf_counter() - t) * 1000
    db_ms = []
    for _ in range(5):  # as if a size refresh had just measured every volume
        now = timezone.now()
        Volume.objects.update(size_measured_at=now)
        EngineStatus.objects.update(sizes_measured_at=now)
        result = usage_sample(max_age_seconds=3600)
        db_ms.append(result.duration_ms)
    print(f"\nSampler, database side: {result.samples} samples written in {statistics.median(db_ms):.0f} ms "
          f"(median of 5); thinning over {rows} samples: {thin_ms:.0f} ms ({dropped} dropped)")

    # The real engine: this replaces the fake mirror with the host's volumes.
    names = make_engine_volumes(engine_volumes, files)
    try:
        mirror_sync()
        present = Volume.objects.present().count()
        runs, walks = [], []
        for _ in range(5):
            t = time.perf_counter()
            result = usage_sample(max_age_seconds=0)  # measure now: the engine's disk-usage walk + samples
            runs.append((time.perf_counter() - t) * 1000)
            walks.append(EngineStatus.get().sizes_ms)
    finally:
        remove_engine_volumes(names)
    print(f"Sampler on the real engine ({present} volumes on this host, {engine_volumes} of them with {files} "
          f"files of 10 kB): {statistics.median(runs):.0f} ms per run (median of 5; the size refresh's "
          f"disk-usage walk and mirror update: {statistics.median(walks):.0f} ms of it), {result.samples} samples per run")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--no-engine", action="store_true", help="skip the sampler runs on the real engine")
    parser.add_argument("--engine-volumes", type=int, default=20, help="real volumes to create for the sampler run")
    parser.add_argument("--files", type=int, default=200, help="files per real volume")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="No directory at")
    logging.disable(logging.INFO)
    scratch = setup_scratch_django()
    try:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from insights.models import VolumeUsageSample
        from jobs.models import Job
        from volumes.models import Container, Mount, Volume

        user = get_user_model().objects.create_superuser("bench", password="bench-pass-1")
        client = Client()
        client.force_login(user)

        fill(10, 3, 1, "base-")
        base = measure(client, urls("base-"), args.requests)
        for model in (VolumeUsageSample, Mount, Container, Volume, Job):
            # Raw: no cascade into other apps' tables (which may hold nothing, or not exist yet).
            model.objects.all()._raw_delete(model.objects.db)
        t = time.perf_counter()
        fill(args.volumes, args.containers, args.days, "big-")
        print(f"filled {args.volumes} volumes, {args.containers} containers, {Mount.objects.count()} mounts, "
              f"{VolumeUsageSample.objects.count()} samples in {time.perf_counter() - t:.1f} s")
        big = measure(client, urls("big-"), args.requests)
        print(f"Insight pages, server-side ms over {args.requests} requests "
              f"({args.volumes} volumes / {args.containers} containers / {args.days} days of samples "
              f"vs baseline 10 / 3 / 1); target: median under {TARGET_MS} ms")
        print(f"{'page':28} {'median':>8} {'p95':>8} {'base med':>9} {'ratio':>6} {'vs target':>9}")
        for label in big:
            med, p95 = big[label]
            bmed, _ = base[label]
            print(f"{label:28} {med:8.1f} {p95:8.1f} {bmed:9.1f} {med / bmed:6.2f} {med / TARGET_MS:9.2f}")
        if not args.no_engine:
            bench_sampler(args.engine_volumes, args.files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
