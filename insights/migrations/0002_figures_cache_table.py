"""The table of the `figures` cache (settings.CACHES: Django's database cache), where the
overview keeps its last figures for every web process and across restarts
(insights.snapshot.counted). Made here so that `migrate` is all a deployment runs."""

from django.core.management import call_command
from django.db import migrations

TABLE = "cargohold_figures_cache"


def create(apps, schema_editor):
    call_command("createcachetable", TABLE, database=schema_editor.connection.alias, verbosity=0)


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(TABLE)}")


class Migration(migrations.Migration):

    dependencies = [("insights", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
