"""Server-side time of the inventory pages with a large mirror.

Fills a scratch database with N volumes (default 1,000) and M containers (default 300)
with mounts, then times `/volumes/`, a filtered `/volumes/`, the htmx refresh partial,
`/volumes/<name>/` and `/containers/` through Django's test client (the whole request
cycle minus the network), median and p95 over 50 requests. The baseline column is the
same page over a mirror of 10 volumes and 3 containers, so the ratio shows what the
size of the host costs.

    .venv/bin/python bench/volume_pages.py [--volumes 1000] [--containers 300] [--requests 50]
"""

import argparse
import random
import shutil

from _django import setup_scratch_django, summary, timings


def fill(n_volumes: int, n_containers: int, prefix: str) -> None:
    from django.utils import timezone

    from hosts.models import default_host
    from volumes.models import Container, EngineStatus, Mount, Volume

    rng = random.Random(7)
    EngineStatus.objects.update_or_create(host=default_host(), defaults={"last_success_at": timezone.now()})
    volumes = []
    for i in range(n_volumes):
        anonymous = i % 4 == 0
        name = f"{prefix}{i:064x}" if anonymous else f"{prefix}project{i % 40}_data{i}"
        labels = {} if anonymous else {"com.docker.compose.project": f"project{i % 40}", "tier": rng.choice(["db", "web", "cache"])}
        volumes.append(Volume(name=name, driver="local", anonymous=anonymous, labels=labels,
                              options={"type": "none"} if i % 10 == 0 else {}, size_bytes=rng.randrange(10**9),
                              size_measured_at=timezone.now(), created_at=timezone.now(),
                              search_text=name + " " + " ".join(f"{k}={v}" for k, v in labels.items())))
    Volume.objects.bulk_create(volumes, batch_size=500)
    volumes = list(Volume.objects.filter(name__startswith=prefix))
    containers = Container.objects.bulk_create(
        [Container(engine_id=f"{prefix}{i:060x}", name=f"{prefix}ctr-{i}", image="postgres:16", state="running",
                   compose_project=f"project{i % 40}", compose_service="db", labels={"a": "b"}) for i in range(n_containers)],
        batch_size=500,
    )
    mounts = []
    for i, c in enumerate(containers):
        for v in rng.sample(volumes, k=min(3, len(volumes))):
            mounts.append(Mount(container=c, kind="volume", volume=v, source=v.name, destination=f"/data/{v.pk}", read_only=rng.random() < 0.3))
        mounts.append(Mount(container=c, kind="bind", source="/etc/app", destination="/etc/app", read_only=True))
        mounts.append(Mount(container=c, kind="tmpfs", destination="/tmp"))
    Mount.objects.bulk_create(mounts, batch_size=500)
    for v in volumes:
        v.container_count = v.mounts.count()
    Volume.objects.bulk_update(volumes, ["container_count"], batch_size=500)


def measure(client, urls: dict[str, str], n: int) -> dict[str, tuple[float, float]]:
    out = {}
    for label, url in urls.items():
        headers = {"HX-Request": "true"} if label.endswith("(htmx)") else {}
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.status_code)
        out[label] = summary(timings(lambda: client.get(url, headers=headers), n))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=300)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    scratch = setup_scratch_django()
    try:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from volumes.models import Container, Mount, Volume

        user = get_user_model().objects.create_superuser("bench", password="bench-pass-1")
        client = Client()
        client.force_login(user)

        def urls(prefix):
            name = Volume.objects.filter(name__startswith=prefix, container_count__gt=0).order_by("name").first().name
            return {
                "/volumes/": "/volumes/",
                "/volumes/?q=…&sort=-size": "/volumes/?q=tier%3Ddb&sort=-size",
                "/volumes/ (htmx)": "/volumes/",
                "/volumes/<name>/": f"/volumes/{name}/",
                "/containers/": "/containers/",
            }

        fill(10, 3, "base-")
        base = measure(client, urls("base-"), args.requests)
        Mount.objects.all().delete()
        Container.objects.all().delete()
        Volume.objects.all().delete()
        fill(args.volumes, args.containers, "big-")
        big = measure(client, urls("big-"), args.requests)
        print(f"Inventory pages, server-side ms over {args.requests} requests "
              f"({args.volumes} volumes / {args.containers} containers vs baseline 10 / 3)")
        print(f"{'page':28} {'median':>8} {'p95':>8} {'base med':>9} {'ratio':>6}")
        for label in big:
            med, p95 = big[label]
            bmed, _ = base[label]
            print(f"{label:28} {med:8.1f} {p95:8.1f} {bmed:9.1f} {med / bmed:6.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
