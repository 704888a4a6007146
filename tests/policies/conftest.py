"""Fixtures for policy tests: policies, real volumes in the mirror, backups run in-process."""

import pytest

from tests import dockercli


@pytest.fixture
def no_enqueue(monkeypatch):
    """Jobs and notifications are created but not sent to Redis: the test runs them itself
    (a session worker started by another test would otherwise race us for them)."""
    from jobs import services as job_services
    from policies import tasks as policy_tasks

    sent = []
    monkeypatch.setattr(job_services, "job_enqueue",
                        lambda *, job, queue=None: sent.append(("jobs.tasks.run_job", (job.pk,))))
    task = policy_tasks.deliver_notification
    monkeypatch.setattr(task, "delay", lambda *args, _name=task.name, **kwargs: sent.append((_name, args)))
    return sent


@pytest.fixture
def backup_root(settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


@pytest.fixture
def make_policy(db):
    from policies import services
    from policies.models import BackupPolicy

    def make(name="nightly", *, selector_kind="label", selector_value="", cron="0 2 * * *", **fields):
        fields.setdefault("keep_last", 3)
        policy = BackupPolicy(name=name, selector_kind=selector_kind, selector_value=selector_value, cron=cron,
                              **fields)
        return services.policy_save(policy=policy)

    return make


@pytest.fixture
def labelled_volumes():
    """make(n, label) -> names of n new volumes carrying `label` (key=value), in the mirror."""
    from volumes.services import mirror_sync

    def make(n: int, label: str, *, fill: bool = True) -> list[str]:
        key, _, value = label.partition("=")
        names = []
        for _ in range(n):
            name = dockercli.create_volume(labels={key: value})
            if fill:
                dockercli.fill_volume(name, "echo hello > /data/hello.txt && mkdir /data/sub && echo x > /data/sub/x")
            names.append(name)
        mirror_sync()
        return names

    return make


def run_backups(runs):
    """Run the queued backups of these runs with the real runner, in this process: their
    end (job_ended) moves the runs on, as in a worker."""
    from jobs.runner import job_perform

    for run in runs:
        run.refresh_from_db()
        if run.job_id:
            job_perform(run.job_id)


def run_verify_jobs(runs):
    from jobs.runner import job_perform

    for run in runs:
        run.refresh_from_db()
        if run.verify_job_id:
            job_perform(run.verify_job_id)
