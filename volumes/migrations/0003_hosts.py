import django.db.models.deletion
from django.db import migrations, models

import hosts.models


def fill_hosts(apps, schema_editor):
    from django.conf import settings

    Host = apps.get_model("hosts", "Host")
    host, _ = Host.objects.get_or_create(name=settings.DEFAULT_HOST_NAME)
    for model in ("Volume", "Container", "EngineStatus"):
        apps.get_model("volumes", model).objects.filter(host__isnull=True).update(host=host)


class Migration(migrations.Migration):
    dependencies = [
        ("hosts", "0001_initial"),
        ("volumes", "0002_volume_last_mount"),
    ]

    operations = [
        migrations.AlterField(model_name="volume", name="name", field=models.CharField(max_length=320, unique=True)),
        migrations.AddField(model_name="volume", name="host", field=models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.PROTECT, related_name="volumes", to="hosts.host")),
        migrations.AddField(model_name="container", name="host", field=models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.PROTECT, related_name="containers", to="hosts.host")),
        migrations.RemoveField(model_name="enginestatus", name="singleton"),
        migrations.AddField(model_name="enginestatus", name="host", field=models.OneToOneField(
            null=True, on_delete=django.db.models.deletion.CASCADE, related_name="engine_status", to="hosts.host")),
        migrations.RunPython(fill_hosts, migrations.RunPython.noop),
        migrations.AlterField(model_name="volume", name="host", field=models.ForeignKey(
            default=hosts.models.default_host_id, on_delete=django.db.models.deletion.PROTECT,
            related_name="volumes", to="hosts.host")),
        migrations.AlterField(model_name="container", name="host", field=models.ForeignKey(
            default=hosts.models.default_host_id, on_delete=django.db.models.deletion.PROTECT,
            related_name="containers", to="hosts.host")),
        migrations.AlterField(model_name="enginestatus", name="host", field=models.OneToOneField(
            default=hosts.models.default_host_id, on_delete=django.db.models.deletion.CASCADE,
            related_name="engine_status", to="hosts.host")),
    ]
