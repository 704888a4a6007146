"""A host's worker says it is alive: every HOST_HEARTBEAT_SECONDS its main process stamps
the host's row, and on a clean shutdown it says it stopped. The dashboard counts a host
offline when the stamp is older than HOST_OFFLINE_SECONDS (hosts.models.host_online), so
a killed worker (no shutdown) shows offline within that time too."""

from __future__ import annotations

import logging
import socket
import threading

from celery.signals import worker_ready, worker_shutdown

logger = logging.getLogger(__name__)

_stop = threading.Event()


def beat_once(*, started: bool = False) -> None:
    from django.utils import timezone

    from hosts import refs
    from hosts.models import Host

    now = timezone.now()
    name = refs.worker_host_name()
    if name == refs.default_host_name():
        Host.objects.get_or_create(name=name)  # made on first use, as everywhere
    # Another host's row is made by an Admin only: a worker of a removed host does not
    # register it again by beating (its engine work is refused: hosts.connection).
    fields = {"heartbeat_at": now, "worker_name": socket.gethostname()[:255]}
    if started:
        fields["worker_started_at"] = now
    if not Host.objects.filter(name=name).update(**fields):
        logger.warning("host heartbeat: the host %s is not registered (removed?); an Admin adds it on the Hosts page",
                       name)


def _beat_forever(interval: float) -> None:
    from django.db import close_old_connections

    while not _stop.wait(interval):
        try:
            close_old_connections()
            beat_once()
        except Exception:  # the database may blink; the next beat tries again
            logger.warning("host heartbeat failed", exc_info=True)


@worker_ready.connect
def _start(**_kwargs) -> None:
    from django.conf import settings

    try:
        beat_once(started=True)
    except Exception:
        logger.warning("host heartbeat failed", exc_info=True)
    _stop.clear()
    threading.Thread(target=_beat_forever, args=(settings.HOST_HEARTBEAT_SECONDS,), daemon=True,
                     name="host heartbeat").start()


@worker_shutdown.connect
def _stopped(**_kwargs) -> None:
    from django.utils import timezone

    from hosts import refs
    from hosts.models import Host

    _stop.set()
    try:
        Host.objects.filter(name=refs.worker_host_name()).update(worker_stopped_at=timezone.now())
    except Exception:
        logger.warning("could not record the worker's stop", exc_info=True)
