from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from volumes.models import EngineStatus


def engine_status(request):
    """The engine banner: shown when the default engine's last sync failed or no sync
    succeeded lately, and for every other host whose worker is offline."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    from hosts.selectors import host_names, hosts_offline

    status = EngineStatus.of_default()
    names = host_names()
    offline = hosts_offline()
    return {"engine": status, "engine_problem": engine_problem(status), "many_hosts": len(names) > 1,
            "host_names": names, "hosts_offline": offline, "offline_host_names": {h.name for h in offline}}


def engine_problem(status: EngineStatus | None) -> str:
    """Why the engine counts as unreachable ("" when it is reachable): the banner, /metrics."""
    if status is None or status.last_success_at is None:
        return status.last_error if status and status.last_error else "Cargohold has not synced with the Docker Engine yet."
    if status.last_error:
        return status.last_error
    if timezone.now() - status.last_success_at > timedelta(seconds=settings.ENGINE_STALE_SECONDS):
        return "No sync with the Docker Engine succeeded recently: is a Cargohold worker running?"
    return ""
