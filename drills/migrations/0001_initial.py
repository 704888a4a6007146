import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("jobs", "0003_job_log"),
        ("backups", "0002_backup_state_from_job"),
        ("policies", "0003_hooks_and_drills"),
    ]

    operations = [
        migrations.CreateModel(
            name="Drill",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("backup_ref", models.PositiveBigIntegerField(blank=True, null=True)),
                ("volume_name", models.CharField(db_index=True, max_length=255)),
                ("scratch_volume", models.CharField(blank=True, db_index=True, max_length=255)),
                ("checks", models.JSONField(blank=True, default=list)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("backup", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                             related_name="drills", to="backups.backup")),
                ("job", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="drills",
                                          to="jobs.job")),
                ("policy", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                             related_name="drills", to="policies.backuppolicy")),
            ],
            options={"ordering": ["-created_at", "-id"], "base_manager_name": "objects"},
        ),
    ]
