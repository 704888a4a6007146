from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_job_end_handled")]

    operations = [
        migrations.AddField(model_name="job", name="log", field=models.TextField(blank=True)),
    ]
