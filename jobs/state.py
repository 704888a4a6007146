"""Domain rows (a backup, a restore) read their run's state through their job.

The job row is the only state machine: a domain row keeps what is its own (an archive,
a checksum, a target volume) and a `job` foreign key. `JobState` gives it read-only
`status`, `error`, `finished_at`, `created_by`, `trigger`, `started_by` and `is_active`
from that job. `JobStateManager` annotates the same names on every query, so pages and
services filter and order by them (`Backup.objects.filter(status="succeeded")`) with one
join instead of a query per row, and instances loaded through it need no second query.
"""

from django.db import models

from jobs.models import Job

# The job's columns a domain row shows as its own (annotation name -> the job's field).
_JOB_FIELDS = {"status": "status", "error": "error", "finished_at": "finished_at"}


def _from_job(name: str, job_field: str):
    key = f"_job_state_{name}"

    def get(self):
        if key in self.__dict__:
            return self.__dict__[key]
        job = self.job if self.job_id else None
        return getattr(job, job_field) if job is not None else None

    def set(self, value):  # only the manager's annotation sets it
        self.__dict__[key] = value

    return property(get, set, doc=f"The job's {job_field}.")


class JobStateQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=Job.ACTIVE)

    def ended(self):
        return self.exclude(status__in=Job.ACTIVE)


class JobStateManager(models.Manager.from_queryset(JobStateQuerySet)):
    """Annotates the job's state; also the model's base manager (Meta.base_manager_name),
    so `restore.backup.status` reads the same way."""

    def get_queryset(self):
        return super().get_queryset().annotate(
            **{name: models.F(f"job__{field}") for name, field in _JOB_FIELDS.items()}
        )


class JobState:
    """Mixin for models with `job = ForeignKey(Job)`: the run's state is the job's."""

    Status = Job.Status
    ACTIVE = Job.ACTIVE

    status = _from_job("status", "status")
    error = _from_job("error", "error")
    finished_at = _from_job("finished_at", "finished_at")

    @property
    def is_active(self) -> bool:
        return self.status in Job.ACTIVE

    @property
    def created_by(self):
        return self.job.created_by if self.job_id else None

    @property
    def created_by_id(self):
        return self.job.created_by_id if self.job_id else None

    @property
    def trigger(self) -> str:
        return self.job.trigger if self.job_id else ""

    @property
    def started_by(self) -> str:
        return self.job.started_by if self.job_id else ""

    def refresh_from_db(self, *args, **kwargs):
        """Also forget the annotated state and the cached job: both may have moved on."""
        super().refresh_from_db(*args, **kwargs)
        for key in [k for k in self.__dict__ if k.startswith("_job_state_")]:
            del self.__dict__[key]
        self._state.fields_cache.pop("job", None)
