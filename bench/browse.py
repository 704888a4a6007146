#!/usr/bin/env python
"""Server-side time of a backup's file browser with a 20,000-file folder.

Makes a volume of N small files (default 20,000) in one folder plus a few others (one
`docker run` of the data helper), backs it up with the real backup handler in this
process (so the file index is the one a real backup writes), then times through Django's
test client (the whole request cycle minus the network), median and p95 over 50 requests:
the big folder's first page and a middle page (200 entries each), its htmx partial, a
search with few hits, a search capped at 500 hits, and the API's page. The baseline
column is the root folder (5 entries) of the same backup. Target: < 300 ms.

    .venv/bin/python bench/browse.py [--files 20000] [--requests 50]

Uses a throw-away database and backup folder; removes the volume after.
"""

import argparse
import shutil
import subprocess
import uuid

from _django import setup_scratch_django, summary, timings


def make_volume(name: str, files: int, image: str) -> None:
    subprocess.run(["docker", "volume", "create", "--label", "cargohold.bench=1", name], check=True,
                   capture_output=True)
    script = ("mkdir -p /data/big /data/etc /data/logs && echo port=80 > /data/etc/site.conf && "
              "echo hi > /data/README && echo x > /data/logs/today.log && cd /data/big && "
              f"i=0; while [ $i -lt {files} ]; do echo $i > file-$i.txt; i=$((i+1)); done")
    subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{name}:/data", "--entrypoint", "sh",
                    image, "-c", script], check=True, capture_output=True)


def back_up(name: str):
    from backups import services
    from backups.models import Backup
    from jobs import tasks
    from jobs.runner import job_perform
    from volumes.services import mirror_sync

    tasks.run_job.apply_async = lambda *args, **kwargs: None  # run here, not on a worker
    mirror_sync()
    backup = services.backup_start(volume_name=name, trigger="bench")
    job_perform(backup.job_id)
    backup = Backup.objects.get(pk=backup.pk)
    if backup.status != Backup.Status.SUCCEEDED:
        raise SystemExit(f"the backup failed: {backup.error}")
    return backup


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    scratch = setup_scratch_django()
    from django.conf import settings

    name = f"chbench-browse-{uuid.uuid4().hex[:8]}"
    try:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from backups.models import BackupEntry

        print(f"making {args.files} files in volume {name} ...", flush=True)
        make_volume(name, args.files, settings.DATA_HELPER_IMAGE)
        backup = back_up(name)
        entries = BackupEntry.objects.filter(backup=backup).count()
        biggest = BackupEntry.objects.filter(backup=backup, parent="big").count()
        user = get_user_model().objects.create_superuser("bench", password="bench-pass-1")
        client = Client()
        client.force_login(user)
        base = f"/backups/{backup.pk}/files/"
        urls = {
            "root folder (baseline)": base,
            f"big folder ({biggest}), page 1": f"{base}?path=big",
            "big folder, page 50": f"{base}?path=big&page=50",
            "big folder, page 1 (htmx)": f"{base}?path=big",
            "search, 11 hits": f"{base}?q=file-1999",
            "search, capped at 500": f"{base}?q=file-1",
            "API, big folder page 1": f"/api/v1/backups/{backup.pk}/files/?path=big&page_size=200",
        }
        print(f"backup #{backup.pk}: {entries} index entries; {args.requests} requests each")
        baseline = None
        print(f"{'page':36} {'median ms':>10} {'p95 ms':>8} {'ratio':>6}")
        for label, url in urls.items():
            headers = {"HX-Request": "true"} if label.endswith("(htmx)") else {}
            response = client.get(url, headers=headers)
            assert response.status_code == 200, (url, response.status_code)
            median, p95 = summary(timings(lambda: client.get(url, headers=headers), args.requests))
            baseline = baseline or median
            print(f"{label:36} {median:10.1f} {p95:8.1f} {median / baseline:6.1f}")
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
