from django.db import migrations, models


def mark_ended_jobs_handled(apps, schema_editor):
    # Jobs that ended before on_end existed were finished by the code of their time.
    Job = apps.get_model("jobs", "Job")
    Job.objects.exclude(status__in=["queued", "running"]).update(end_handled=True)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="job", name="end_handled", field=models.BooleanField(db_index=True, default=False),
        ),
        migrations.RunPython(mark_ended_jobs_handled, migrations.RunPython.noop),
    ]
