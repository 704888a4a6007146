"""The run's state is the job's: drop the columns that copied it (status, error, times,
creator, trigger); every restore has a job."""

import django.db.models.deletion
from django.db import migrations, models


def give_every_restore_a_job(apps, schema_editor):
    # A restore whose job was deleted keeps its state in a job made from its own columns.
    Job = apps.get_model("jobs", "Job")
    Restore = apps.get_model("restores", "Restore")
    for restore in Restore.objects.filter(job__isnull=True):
        restore.job = Job.objects.create(
            kind="restore_in_place" if restore.mode == "in_place" else "restore", target=restore.volume_name,
            target_type="volume", status=restore.status, error=restore.error, created_by=restore.created_by,
            trigger=restore.trigger, started_at=restore.started_at, finished_at=restore.finished_at,
            params={"restore": restore.pk}, end_handled=True,
        )
        restore.save(update_fields=["job"])


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_job_end_handled"),
        ("restores", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(give_every_restore_a_job, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="restore", name="job",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="restores",
                                    to="jobs.job"),
        ),
        migrations.RemoveField(model_name="restore", name="status"),
        migrations.RemoveField(model_name="restore", name="error"),
        migrations.RemoveField(model_name="restore", name="created_by"),
        migrations.RemoveField(model_name="restore", name="trigger"),
        migrations.RemoveField(model_name="restore", name="started_at"),
        migrations.RemoveField(model_name="restore", name="finished_at"),
        migrations.AlterModelOptions(
            name="restore", options={"base_manager_name": "objects", "ordering": ["-created_at", "-id"]},
        ),
    ]
