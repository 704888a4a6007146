"""Screenshots of the main pages at 1440 px and 390 px, into docs/screenshots/.

Self-contained: a scratch folder (SQLite database, backup folder), a throw-away Admin, a
small Compose-like world made on the local engine (volumes, containers, a backup, a
policy; labelled cargohold.demo=<id> and removed at the end), Django's runserver on a free
127.0.0.1 port, Chromium (/usr/bin/chromium) through Playwright. Nothing of the dev
database or the engine's other objects is touched.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--only volumes,graph]

Viewport-sized shots (not whole pages) keep each PNG small (about 100-200 KB).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_ID = uuid.uuid4().hex[:6]
DEMO_LABEL = f"cargohold.demo={DEMO_ID}"
HELPER_IMAGE = os.environ.get("CARGOHOLD_HELPER_IMAGE", "busybox:stable")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}
PASSWORD = uuid.uuid4().hex  # the throw-away Admin's, never printed


def docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"docker {args[0]} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def make_world() -> dict:
    """Two Compose projects, a shared read-only mount, an anonymous volume, one unused."""
    names = {}
    for key, project, volume in (("db", "shop", "db-data"), ("cache", "shop", "cache"),
                                 ("media", "blog", "media"), ("unused", "", "")):
        labels = ["--label", DEMO_LABEL]
        if project:
            labels += ["--label", f"com.docker.compose.project={project}-{DEMO_ID}",
                       "--label", f"com.docker.compose.volume={volume}"]
        name = f"{project or 'old'}-{DEMO_ID}_{volume or 'leftovers'}"
        docker("volume", "create", *labels, name)
        names[key] = name
    docker("run", "--rm", "--network", "none", "--label", DEMO_LABEL, "-v", f"{names['db']}:/data", HELPER_IMAGE,
           "sh", "-c", "head -c 12000000 /dev/urandom > /data/base.bin && mkdir -p /data/pg && echo ok > /data/pg/v")
    docker("run", "--rm", "--network", "none", "--label", DEMO_LABEL, "-v", f"{names['media']}:/data", HELPER_IMAGE,
           "sh", "-c", "mkdir -p /data/uploads && head -c 3000000 /dev/urandom > /data/uploads/photo.jpg")
    for service, project, mounts in (("db", "shop", [f"{names['db']}:/var/lib/postgresql/data"]),
                                     ("worker", "shop", [f"{names['cache']}:/cache", f"{names['db']}:/ro:ro", "/cache2"]),
                                     ("web", "blog", [f"{names['media']}:/srv/media"])):
        args = ["run", "-d", "--name", f"{project}-{DEMO_ID}-{service}-1", "--network", "none", "--label", DEMO_LABEL,
                "--label", f"com.docker.compose.project={project}-{DEMO_ID}",
                "--label", f"com.docker.compose.service={service}"]
        for m in mounts:
            args += ["-v", m]
        docker(*args, HELPER_IMAGE, "sleep", "3600")
    return names


def remove_world() -> None:
    """The demo's containers (with their anonymous volumes: -v), then its volumes."""
    for cid in docker("ps", "-aq", "--filter", f"label={DEMO_LABEL}").split():
        subprocess.run(["docker", "rm", "-f", "-v", cid], capture_output=True)
    for name in docker("volume", "ls", "-q", "--filter", f"label={DEMO_LABEL}").split():
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)


def fill_database(names: dict) -> dict:
    """Migrate the scratch database, sync the mirror, back one volume up, make a policy."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from unittest import mock

    from accounts.roles import ensure_roles
    from backups import services as backups
    from django.contrib.auth.models import Group, User
    from jobs.runner import job_perform
    from policies import services as policies
    from policies.models import BackupPolicy
    from volumes.models import Container, Volume
    from volumes.services import mirror_sync, sizes_refresh

    ensure_roles()
    admin = User.objects.create_user(username="admin", password=PASSWORD)
    admin.groups.add(Group.objects.get(name="Admin"))
    mirror_sync()
    sizes_refresh()
    # The engine is shared (tests, other people's containers): the pages show the demo only.
    # The scratch mirror forgets the rest (nothing syncs it again while the shots are taken).
    demo_key, _, demo_value = DEMO_LABEL.partition("=")
    def others(model):
        return [o.pk for o in model.objects.all() if o.labels.get(demo_key) != demo_value]

    Container.objects.filter(pk__in=others(Container)).delete()
    # Anonymous volumes carry no label: the demo's are those its containers still mount.
    Volume.objects.filter(pk__in=others(Volume)).exclude(anonymous=True, mounts__isnull=False).delete()
    with mock.patch("jobs.services.job_enqueue"):  # run here, no worker needed
        backup = backups.backup_start(volume_name=names["db"], user=admin)
    job_perform(backup.job_id)
    policy = policies.policy_save(policy=BackupPolicy(
        name="shop nightly", selector_kind="compose", selector_value=f"shop-{DEMO_ID}", cron="0 2 * * *",
        keep_last=7, keep_daily=7))
    return {"volume": names["db"], "backup": backup.pk, "policy": policy.pk, "job": backup.job_id}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"runserver did not answer at {url}")


def pages(ids: dict) -> dict[str, str]:
    return {
        "overview": "/", "volumes": "/volumes/", "volume": f"/volumes/{ids['volume']}/", "containers": "/containers/",
        "backups": "/backups/", "backup": f"/backups/{ids['backup']}/", "restores": "/restores/",
        "policies": "/policies/", "policy": f"/policies/{ids['policy']}/", "risks": "/risks/", "graph": "/graph/",
        "audit": "/audit/", "job": f"/jobs/{ids['job']}/",
    }


def shoot(base: str, ids: dict, out: Path, only: set[str]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        for device, (width, height) in WIDTHS.items():
            context = browser.new_context(base_url=base, viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto("/accounts/login/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            for name, path in pages(ids).items():
                if only and name not in only:
                    continue
                page.goto(path)
                page.wait_for_load_state("networkidle")
                target = out / f"{name}-{width}.png"
                page.screenshot(path=str(target))
                saved.append(target)
            if not only or "menu" in only:  # the folded navigation, opened
                page.goto("/volumes/")
                if page.locator(".menu-toggle").is_visible():
                    page.click(".menu-toggle")
                    target = out / f"menu-{width}.png"
                    page.screenshot(path=str(target))
                    saved.append(target)
            context.close()
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--only", default="", help="comma-separated page names (overview, volumes, graph...)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cargohold-shots-"))
    env = {**os.environ, "CARGOHOLD_VAR_DIR": str(scratch), "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
           "BACKUP_ROOT": str(scratch / "backups"), "UPLOAD_DIR": str(scratch / "uploads"),
           "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "0"}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    server = None
    try:
        ids = fill_database(make_world())
        port = free_port()
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/accounts/login/")
        for path in shoot(base, ids, out, {n for n in args.only.split(",") if n}):
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size // 1024} KiB")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        remove_world()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
