from django import forms

from backups.models import Backup

COMPRESSION_CHOICES = [
    ("zstd", "zstd (fast, multi-threaded; default)"),
    ("gzip", "gzip (slower; for tools that only know tar.gz)"),
]


class BackupForm(forms.Form):
    stop_containers = forms.BooleanField(
        required=False, label="Stop the containers that use this volume during the backup",
        help_text="They are started again afterwards, also if the backup fails.",
    )
    compression = forms.ChoiceField(choices=COMPRESSION_CHOICES, initial=Backup.Compression.ZSTD)


class BulkBackupForm(forms.Form):
    STOP_CHOICES = [
        ("default", "Each volume's default (its cargohold.stop-during-backup label)"),
        ("stop", "Stop the containers that use them"),
        ("no", "Do not stop containers"),
    ]
    # The volumes (or the Compose project) are read by the view and checked against the mirror.
    stop_containers = forms.ChoiceField(choices=STOP_CHOICES, initial="default")
    compression = forms.ChoiceField(choices=COMPRESSION_CHOICES, initial=Backup.Compression.ZSTD)

    def stop_value(self) -> bool | None:
        return {"default": None, "stop": True, "no": False}[self.cleaned_data["stop_containers"]]
