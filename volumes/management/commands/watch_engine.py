import logging
import queue
import threading
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from volumes import engine, services

logger = logging.getLogger("cargohold.watcher")

_RELEVANT = {
    "volume": {"create", "destroy", "mount", "unmount"},
    "container": {"create", "destroy", "start", "stop", "die", "pause", "unpause", "rename", "update", "kill", "restart"},
}


class Command(BaseCommand):
    help = (
        "Follow the Docker Engine's events and refresh the mirror within a second of a change. "
        "Worker-side: it needs the Docker socket. Periodic syncs by celery beat remain the safety net."
    )

    def add_arguments(self, parser):
        parser.add_argument("--debounce", type=float, default=0.3, help="seconds to gather a burst of events")

    def handle(self, *args, **options):
        debounce = options["debounce"]
        wake: queue.Queue = queue.Queue()
        threading.Thread(target=self._follow_events, args=(wake,), daemon=True, name="events").start()
        wake.put("start")
        self.stdout.write("Watching engine events.")
        while True:
            wake.get()
            time.sleep(debounce)
            while not wake.empty():
                wake.get_nowait()
            close_old_connections()
            try:
                result = services.mirror_sync()
                if result.changed:
                    logger.info("synced after events: %s", result)
            except engine.EngineError as exc:
                logger.warning("sync failed: %s", exc)
            except Exception:
                logger.exception("sync failed")

    def _follow_events(self, wake: queue.Queue) -> None:
        delay = 1.0
        while True:
            try:
                for event in engine.events():
                    delay = 1.0
                    kind = event.get("Type")
                    if event.get("Action", "").split(":")[0] in _RELEVANT.get(kind, ()):
                        wake.put(kind)
            except engine.EngineError as exc:
                logger.warning("event stream broke: %s; retrying in %.0f s", exc, delay)
                engine.reset_client()
            except Exception:
                logger.exception("event stream broke")
            # Whatever happened while we were not listening is picked up by a full sync.
            time.sleep(delay)
            delay = min(delay * 2, 30)
            wake.put("reconnect")
