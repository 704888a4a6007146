"""Beat's configuration: the database scheduler, and the static entries it imports."""

import pytest
from django.conf import settings


def test_beat_uses_the_database_scheduler():
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
    procfile = (settings.BASE_DIR / "Procfile").read_text()
    beat_line = next(line for line in procfile.splitlines() if line.startswith("beat:"))
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat_line


@pytest.mark.django_db(transaction=True)
def test_the_database_scheduler_imports_the_static_entries_with_their_expiry():
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from project.celery import app

    scheduler = DatabaseScheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        task = PeriodicTask.objects.get(name=name)
        assert task.task == entry["task"] and task.enabled
        assert task.interval is not None
        assert task.interval.every * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[task.interval.period] \
            == entry["schedule"].total_seconds()
        expires = (entry.get("options") or {}).get("expires")
        if expires:
            assert task.expire_seconds == expires, name
    assert "check-policies" in settings.CELERY_BEAT_SCHEDULE
