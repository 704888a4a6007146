from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("policies", "0002_policyrun_state_from_job")]

    operations = [
        migrations.AddField(model_name="backuppolicy", name="hook_pre", field=models.TextField(blank=True)),
        migrations.AddField(model_name="backuppolicy", name="hook_post", field=models.TextField(blank=True)),
        migrations.AddField(model_name="backuppolicy", name="hook_user",
                            field=models.CharField(blank=True, max_length=64)),
        migrations.AddField(model_name="backuppolicy", name="hook_timeout_seconds",
                            field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="backuppolicy", name="hook_continue_on_failure",
                            field=models.BooleanField(default=False)),
        migrations.AddField(model_name="backuppolicy", name="drill_every_days",
                            field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="backuppolicy", name="drill_probe", field=models.TextField(blank=True)),
    ]
