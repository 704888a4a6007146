"""`python manage.py host_worker --host NAME`: the worker and the event watcher of one
Docker host, started beside its engine (one command, as the README's deployment says)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hosts import refs


class Command(BaseCommand):
    help = ("Run the Celery worker (on the host's own queue) and the engine event watcher of one "
            "Docker host. Needs the database, the broker and that host's engine (its row on the "
            "Hosts page says how to reach it); the web tier never connects to the engine.")

    def add_arguments(self, parser):
        parser.add_argument("--host", required=True, help="the host's name, as registered on the Hosts page")
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--no-watcher", action="store_true", help="the worker only (the watcher runs elsewhere)")
        parser.add_argument("--also-default-queue", action="store_true",
                            help="also take the tasks that belong to no host (retention, policies): the default "
                                 "host's worker does this already")

    def handle(self, *args, **options):
        from hosts.models import Host

        name = options["host"]
        if not refs.HOST_NAME.match(name):
            raise CommandError(f"Not a host name: {name!r} ({refs.HOST_NAME_RULE}).")
        if name != refs.default_host_name() and not Host.objects.filter(name=name).exists():
            raise CommandError(f"No host named {name} is registered: an Admin adds it first "
                               f"(Hosts page, or python manage.py add_host {name} --url ...).")
        env = dict(os.environ, CARGOHOLD_WORKER_HOST=name)
        queues = [refs.queue_for(name)]
        if options["also_default_queue"] and settings.CELERY_TASK_DEFAULT_QUEUE not in queues:
            queues.append(settings.CELERY_TASK_DEFAULT_QUEUE)
        worker = [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel", options["loglevel"],
                  "--concurrency", str(options["concurrency"]), "-n", f"{name}-{os.getpid()}@%h",
                  "--without-gossip", "--without-mingle", "-Q", ",".join(queues)]
        children = [subprocess.Popen(worker, env=env)]
        if not options["no_watcher"]:
            children.append(subprocess.Popen([sys.executable, "manage.py", "watch_engine"], env=env,
                                             cwd=settings.BASE_DIR))
        self.stdout.write(f"Host {name}: worker on {', '.join(queues)}"
                          + ("" if options["no_watcher"] else " and the event watcher") + " started.")
        self.stdout.flush()
        stopping = []

        def stop(signum, _frame):
            stopping.append(signum)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # One of them ending ends both: a host with a worker but no watcher (or the other way
        # round) would look alive and be stale.
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        asked = bool(stopping)
        stop(signal.SIGTERM, None)
        deadline = time.monotonic() + 30
        for child in children:
            try:
                child.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        codes = [child.returncode for child in children]
        if not asked or any(code not in (0, -signal.SIGTERM) for code in codes):
            raise CommandError(f"The host {name}'s processes ended (exit codes {codes}).")
