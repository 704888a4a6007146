from django.apps import AppConfig


class VolumesConfig(AppConfig):
    name = "volumes"
    verbose_name = "Volumes (the mirror of the engine)"

    def ready(self):
        from accounts import roles
        from jobs import kinds

        kinds.register("volume_create", "create volume", cancel_perm=roles.MANAGE_VOLUMES)
        kinds.register("volume_remove", "remove volume", cancel_perm=roles.MANAGE_VOLUMES)
        kinds.register("volume_prune", "prune volumes", cancel_perm=roles.MANAGE_VOLUMES)
