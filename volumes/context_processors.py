from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from volumes.models import EngineStatus


def engine_status(request):
    """The engine banner: shown when the last sync failed or no sync succeeded lately."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    status = EngineStatus.objects.filter(singleton=1).first()
    problem = ""
    if status is None or status.last_success_at is None:
        problem = status.last_error if status and status.last_error else "Cargohold has not synced with the Docker Engine yet."
    elif status.last_error:
        problem = status.last_error
    elif timezone.now() - status.last_success_at > timedelta(seconds=settings.ENGINE_STALE_SECONDS):
        problem = "No sync with the Docker Engine succeeded recently: is a Cargohold worker running?"
    return {"engine": status, "engine_problem": problem}
