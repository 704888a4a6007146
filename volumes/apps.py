from django.apps import AppConfig


class VolumesConfig(AppConfig):
    name = "volumes"
    verbose_name = "Volumes (the mirror of the engine)"

    def ready(self):
        from volumes import worker

        worker.register_kinds()
