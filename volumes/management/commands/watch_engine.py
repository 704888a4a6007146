import logging
import queue
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from volumes import engine, services

logger = logging.getLogger("cargohold.watcher")

_RELEVANT = {
    "volume": {"create", "destroy", "mount", "unmount"},
    "container": {"create", "destroy", "start", "stop", "die", "pause", "unpause", "rename", "update", "kill", "restart"},
}
# After these a volume's size (or a writable layer's) may have changed: a new volume, a
# container that stopped writing (die covers stop and kill), a helper that let go of one.
_RESIZING = {("volume", "create"), ("volume", "unmount"), ("container", "die"), ("container", "destroy")}


class SizeSchedule:
    """When the next disk-usage measurement may start.

    The engine's disk-usage call walks every local volume (bench/sizes.py measures it),
    so requests are bounded three ways: a burst of events within `debounce` seconds of
    the first one is one measurement; never two at once (a request during one waits for
    its end); and at least `min_interval` seconds between the starts of two. Pure logic
    with an injectable clock: the watcher's sizer thread asks it, the tests drive it.
    """

    def __init__(self, *, debounce: float, min_interval: float, clock=time.monotonic):
        self.debounce, self.min_interval, self.clock = debounce, min_interval, clock
        self.pending_since: float | None = None
        self.last_started: float | None = None
        self.running = False

    def request(self) -> None:
        if self.pending_since is None:
            self.pending_since = self.clock()

    def wait_seconds(self) -> float | None:
        """None: nothing to start now (none asked, or one running); else seconds until it may start."""
        if self.pending_since is None or self.running:
            return None
        ready = self.pending_since + self.debounce
        if self.last_started is not None:
            ready = max(ready, self.last_started + self.min_interval)
        return max(0.0, ready - self.clock())

    def start(self) -> None:
        self.running, self.pending_since, self.last_started = True, None, self.clock()

    def finish(self) -> None:
        self.running = False


class Command(BaseCommand):
    help = (
        "Follow the Docker Engine's events and refresh the mirror within a second of a change, "
        "and the sizes of what changed within seconds (debounced, one measurement at a time). "
        "Worker-side: it needs the Docker socket. Periodic syncs by celery beat remain the safety net."
    )

    def add_arguments(self, parser):
        parser.add_argument("--debounce", type=float, default=0.3, help="seconds to gather a burst of events")
        parser.add_argument("--size-debounce", type=float, default=settings.SIZE_DEBOUNCE_SECONDS,
                            help="seconds to gather the events that change sizes into one measurement")
        parser.add_argument("--size-min-interval", type=float, default=settings.SIZE_MIN_INTERVAL_SECONDS,
                            help="at least this many seconds between two size measurements")

    def handle(self, *args, **options):
        debounce = options["debounce"]
        schedule = SizeSchedule(debounce=options["size_debounce"], min_interval=options["size_min_interval"])
        sizer = threading.Condition()
        wake: queue.Queue = queue.Queue()
        threading.Thread(target=self._follow_events, args=(wake,), daemon=True, name="events").start()
        threading.Thread(target=self._measure_sizes, args=(schedule, sizer), daemon=True, name="sizes").start()
        wake.put(("start", ""))
        self.stdout.write("Watching engine events.")
        while True:
            events = [wake.get()]
            time.sleep(debounce)
            while not wake.empty():
                events.append(wake.get_nowait())
            close_old_connections()
            try:
                result = services.mirror_sync()
                if result.changed:
                    logger.info("synced after events: %s", result)
            except engine.EngineError as exc:
                logger.warning("sync failed: %s", exc)
            except Exception:
                logger.exception("sync failed")
            # After the sync, so that a new volume has its row when its size arrives. The
            # start and a reconnect may have missed anything: measure once then too.
            if any(e in _RESIZING or e[0] in ("start", "reconnect") for e in events):
                with sizer:
                    schedule.request()
                    sizer.notify()

    def _measure_sizes(self, schedule: SizeSchedule, sizer: threading.Condition) -> None:
        while True:
            with sizer:
                while (wait := schedule.wait_seconds()) != 0:
                    sizer.wait(timeout=wait)
                schedule.start()
            close_old_connections()
            try:
                measured = services.sizes_refresh()
                logger.info("sizes measured after events: %s volumes", measured)
            except engine.EngineError as exc:
                logger.warning("size measurement failed: %s", exc)
            except Exception:
                logger.exception("size measurement failed")
            finally:
                with sizer:
                    schedule.finish()

    def _follow_events(self, wake: queue.Queue) -> None:
        delay = 1.0
        while True:
            try:
                for event in engine.events():
                    delay = 1.0
                    kind = event.get("Type")
                    action = event.get("Action", "").split(":")[0]
                    if action in _RELEVANT.get(kind, ()):
                        wake.put((kind, action))
            except engine.EngineError as exc:
                logger.warning("event stream broke: %s; retrying in %.0f s", exc, delay)
                engine.reset_client()
            except Exception:
                logger.exception("event stream broke")
            # Whatever happened while we were not listening is picked up by a full sync.
            time.sleep(delay)
            delay = min(delay * 2, 30)
            wake.put(("reconnect", ""))
