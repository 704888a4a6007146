import pytest


@pytest.fixture
def no_enqueue(monkeypatch):
    """Jobs are created but not sent to Redis: the test runs them itself with the real
    runner (a session worker started by another test would otherwise race us for them)."""
    monkeypatch.setattr("jobs.services.job_enqueue", lambda **kwargs: None)
