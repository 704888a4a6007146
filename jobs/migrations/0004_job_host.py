from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0003_job_log")]

    operations = [
        migrations.AddField(model_name="job", name="host",
                            field=models.CharField(blank=True, db_index=True, default="", max_length=63)),
    ]
