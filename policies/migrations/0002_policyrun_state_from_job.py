"""PolicyRun reads its state through its backup's job (and verify job): the copied
status, times and message go; what was the run's own becomes its `outcome`."""

from django.db import migrations, models

ACTIVE = ("queued", "running")


def _derived(run, job, verify) -> str:
    """What the new model derives for a run with no outcome of its own (see _run_state)."""
    if job is None:
        return "queued"
    if job.status in ACTIVE:
        return job.status
    if job.status != "succeeded":
        return "failed"
    if not run.verify_wanted:
        return "succeeded"
    if verify is None or verify.status in ACTIVE:
        return "running"
    return "succeeded" if verify.status == "succeeded" else "failed"


def forwards(apps, schema_editor):
    PolicyRun = apps.get_model("policies", "PolicyRun")
    Job = apps.get_model("jobs", "Job")
    for run in PolicyRun.objects.all().iterator():
        run.verify_wanted = run.verify_job_id is not None
        job = Job.objects.filter(pk=run.job_id).first() if run.job_id else None
        verify = Job.objects.filter(pk=run.verify_job_id).first() if run.verify_job_id else None
        if run.status not in ACTIVE and _derived(run, job, verify) != run.status:
            # Ended in a way its jobs do not tell (skipped, missed, could not start...).
            run.outcome, run.outcome_message = run.status, run.message
            run.outcome_at = run.finished_at or run.created_at
        run.save(update_fields=["verify_wanted", "outcome", "outcome_message", "outcome_at"])


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0001_initial"),
        ("policies", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="policyrun", name="verify_wanted", field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="policyrun", name="outcome",
            field=models.CharField(blank=True, choices=[("", "follow the backup's job"), ("failed", "failed"),
                                                        ("skipped", "skipped"), ("missed", "missed")],
                                   default="", max_length=16),
        ),
        migrations.AddField(model_name="policyrun", name="outcome_message", field=models.TextField(blank=True)),
        migrations.AddField(
            model_name="policyrun", name="outcome_at", field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="policyrun", name="policies_po_policy__b4a117_idx"),
        migrations.RemoveField(model_name="policyrun", name="status"),
        migrations.RemoveField(model_name="policyrun", name="started_at"),
        migrations.RemoveField(model_name="policyrun", name="finished_at"),
        migrations.RemoveField(model_name="policyrun", name="message"),
        migrations.AddIndex(
            model_name="policyrun",
            index=models.Index(fields=["policy", "volume_name"], name="policyrun_policy_volume"),
        ),
        migrations.AlterModelOptions(
            name="policyrun",
            options={"base_manager_name": "objects", "ordering": ["-scheduled_for", "-id"]},
        ),
    ]
