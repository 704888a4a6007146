import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("drills", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="DumpChoice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("volume_name", models.CharField(db_index=True, max_length=255)),
                ("container_name", models.CharField(max_length=255)),
                ("recipe", models.CharField(max_length=600)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["volume_name", "container_name", "recipe"]},
        ),
        migrations.AddConstraint(
            model_name="dumpchoice",
            constraint=models.UniqueConstraint(fields=("volume_name", "container_name", "recipe"),
                                               name="one_dump_choice_per_recipe"),
        ),
    ]
