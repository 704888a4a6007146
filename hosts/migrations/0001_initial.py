from django.conf import settings
from django.db import migrations, models


def make_default_host(apps, schema_editor):
    Host = apps.get_model("hosts", "Host")
    Host.objects.get_or_create(name=settings.DEFAULT_HOST_NAME)


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Host",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.SlugField(max_length=63, unique=True)),
                ("url", models.CharField(blank=True, default="", max_length=512)),
                ("tls_ca_cert", models.TextField(blank=True, default="")),
                ("tls_client_cert", models.TextField(blank=True, default="")),
                ("tls_client_key_enc", models.TextField(blank=True, default="")),
                ("description", models.CharField(blank=True, default="", max_length=255)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("worker_started_at", models.DateTimeField(blank=True, null=True)),
                ("worker_stopped_at", models.DateTimeField(blank=True, null=True)),
                ("worker_name", models.CharField(blank=True, default="", max_length=255)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.RunPython(make_default_host, migrations.RunPython.noop),
    ]
