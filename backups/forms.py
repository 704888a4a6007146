from django import forms

from backups.models import Backup

COMPRESSION_CHOICES = [
    ("zstd", "zstd (fast, multi-threaded; default)"),
    ("gzip", "gzip (slower; for tools that only know tar.gz)"),
]


class RepositoryChoiceField(forms.ModelChoiceField):
    """Where a backup goes: any existing repository (Operators choose, only Admins create
    them); the default one preselected."""

    def __init__(self, **kwargs):
        from repositories.models import Repository

        kwargs.setdefault("queryset", Repository.objects.order_by("-is_default", "name"))
        kwargs.setdefault("to_field_name", "name")
        kwargs.setdefault("empty_label", None)
        kwargs.setdefault("help_text", "Where the backup is stored (Admins manage the list on the Repositories page).")
        super().__init__(**kwargs)

    def label_from_instance(self, obj):
        kind = "restic" if obj.is_restic else "archives"
        where = "S3" if obj.is_s3 else "folder"
        return f"{obj.name} ({kind}, {where}{', default' if obj.is_default else ''})"


def repository_initial() -> str:
    from repositories.selectors import repository_default

    return repository_default().name


class RepositoryFormMixin:
    """Adds the `repository` chooser, the default one preselected (made on first use)."""

    def _add_repository_field(self):
        # Not required: a request that names none (a script's POST) gets the default one.
        self.fields["repository"] = RepositoryChoiceField(label="Repository", required=False)
        if not self.is_bound:
            self.initial.setdefault("repository", repository_initial())


class BackupForm(RepositoryFormMixin, forms.Form):
    stop_containers = forms.BooleanField(
        required=False, label="Stop the containers that use this volume during the backup",
        help_text="They are started again afterwards, also if the backup fails.",
    )
    compression = forms.ChoiceField(choices=COMPRESSION_CHOICES, initial=Backup.Compression.ZSTD)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_repository_field()


class BulkBackupForm(RepositoryFormMixin, forms.Form):
    STOP_CHOICES = [
        ("default", "Each volume's default (its cargohold.stop-during-backup label)"),
        ("stop", "Stop the containers that use them"),
        ("no", "Do not stop containers"),
    ]
    # The volumes (or the Compose project) are read by the view and checked against the mirror.
    stop_containers = forms.ChoiceField(choices=STOP_CHOICES, initial="default")
    compression = forms.ChoiceField(choices=COMPRESSION_CHOICES, initial=Backup.Compression.ZSTD)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_repository_field()

    def stop_value(self) -> bool | None:
        return {"default": None, "stop": True, "no": False}[self.cleaned_data["stop_containers"]]
