"""A backup's run state is its job's: every backup gets a job of its own, then the copied
columns go (status, error, finished_at, created_by, trigger).

Rows without a job (found in storage by a rescan, or whose job was deleted) get an ended
job of kind "backup_found" carrying the row's own state; a safety backup, which used to
run inside its restore's job, gets a child job of kind "backup" with its own state, so
it no longer reads the restore's.
"""

import django.db.models.deletion
from django.db import migrations, models

OWN_KINDS = ("backup", "backup_import")


def give_each_backup_its_job(apps, schema_editor):
    Backup = apps.get_model("backups", "Backup")
    Job = apps.get_model("jobs", "Job")
    for backup in Backup.objects.filter(models.Q(job__isnull=True) | ~models.Q(job__kind__in=OWN_KINDS)).iterator():
        job = Job.objects.create(
            kind="backup_found" if backup.job_id is None else "backup",
            # Nothing will run it now: a row left active ends failed.
            status="failed" if backup.status in ("queued", "running") else backup.status,
            target=backup.volume_name, target_type="volume",
            error=backup.error or ("It never finished." if backup.status in ("queued", "running") else ""),
            created_by_id=backup.created_by_id, trigger=backup.trigger,
            started_at=backup.started_at, finished_at=backup.finished_at, end_handled=True,
        )
        Job.objects.filter(pk=job.pk).update(created_at=backup.created_at)
        Backup.objects.filter(pk=backup.pk).update(job=job)


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0001_initial"),
        ("jobs", "0002_job_end_handled"),
    ]

    operations = [
        migrations.RunPython(give_each_backup_its_job, migrations.RunPython.noop),
        migrations.RemoveField(model_name="backup", name="status"),
        migrations.RemoveField(model_name="backup", name="error"),
        migrations.RemoveField(model_name="backup", name="finished_at"),
        migrations.RemoveField(model_name="backup", name="created_by"),
        migrations.RemoveField(model_name="backup", name="trigger"),
        migrations.AlterField(
            model_name="backup", name="job",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="backups",
                                    to="jobs.job"),
        ),
        migrations.AlterModelOptions(
            name="backup", options={"base_manager_name": "objects", "ordering": ["-created_at", "-id"]},
        ),
        migrations.AlterModelManagers(name="backup", managers=[]),
    ]
