"""Forms of the restore and import pages; the CLI validates through the same services."""

from __future__ import annotations

from django import forms

from hosts import refs
from project.errors import Refused
from restores.services import clean_restore_paths
from volumes.forms import NAME_HELP, driver_refusal, known_drivers, pair_rows, parse_pairs, validate_volume_name
from volumes.models import Volume

ALLOW_DEVICES_HELP = (
    "Off: an archive holding block or character devices is refused. On: they are created in the volume "
    "(only for archives you trust; a device node gives access to the host's hardware)."
)


class PathsField(forms.Field):
    """`paths`: repeated hidden inputs (the file browser's checkboxes, carried to the form);
    checked against the backup by the restore service (clean_restore_paths)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        return [str(v) for v in (value or [])]


class SelectedPathsMixin:
    """A restore of some files and folders only: `paths` ([] = the whole backup), taken
    from the query string on the form's first showing, posted back as hidden inputs;
    checked both times by services.clean_restore_paths (the one set of rules)."""

    def _init_paths(self, backup, selected) -> None:
        self.backup = backup
        self.paths_problem = ""
        if self.is_bound:
            return
        try:
            self.initial["paths"] = clean_restore_paths(backup, selected)
        except Refused as exc:
            self.initial["paths"] = []
            self.paths_problem = str(exc)

    def clean_paths(self):
        try:
            return clean_restore_paths(self.backup, self.cleaned_data["paths"])
        except Refused as exc:
            raise forms.ValidationError(str(exc)) from None

    @property
    def selected_paths(self) -> list[str]:
        if self.is_bound:
            return (getattr(self, "cleaned_data", None) or {}).get("paths") or []
        return self.initial.get("paths") or []


class RestoreNewForm(SelectedPathsMixin, forms.Form):
    name = forms.CharField(max_length=255, label="New volume's name", help_text=NAME_HELP, strip=True)
    driver = forms.ChoiceField(
        error_messages={"invalid_choice": "The engine has no volume driver named %(value)s (see the list)."},
    )
    allow_devices = forms.BooleanField(required=False, label="Allow device nodes", help_text=ALLOW_DEVICES_HELP)
    # Off by default: with Compose's labels the copy would join the project (and count as reclaimable).
    copy_compose_labels = forms.BooleanField(required=False, label="Copy the Compose labels too")
    paths = PathsField(required=False)
    # Shown only with several hosts: restoring on another host copies the volume there
    # through the backup's repository (that host's worker reads it).
    host = forms.ChoiceField(required=False, label="Target host",
                             help_text="The Docker host that gets the new volume; its worker restores it.")

    def __init__(self, *args, manifest: dict, backup, selected=(), **kwargs):
        """`manifest`: services.restore_defaults (what the restore starts from, and whether
        this user may choose a driver, options and device nodes); `selected`: the paths
        the file browser sent (the query string's `paths`)."""
        super().__init__(*args, **kwargs)
        self._init_paths(backup, selected)
        from hosts.selectors import host_names

        names = host_names()
        self.many_hosts = len(names) > 1
        self.fields["host"].choices = [(n, n) for n in names]
        source_host = refs.host_of(backup.volume_name)
        self.fields["host"].initial = source_host if source_host in names else refs.default_host_name()
        if not self.many_hosts:
            self.fields["host"].widget = forms.HiddenInput()
        self.may_choose = manifest["may_choose"]
        self.manifest_driver = manifest["driver"]
        if self.may_choose:
            drivers = known_drivers()
            if manifest["driver"] not in drivers:
                drivers.append(manifest["driver"])  # the engine may lack it: refused with its message later
            self.fields["driver"].choices = [(d, d) for d in drivers]
        else:
            # Not shown; whatever is posted goes to the service, which refuses anything but plain local.
            self.fields["driver"] = forms.CharField(required=False, max_length=255)
        self.redacted = manifest["redacted"]
        self.compose_labels = manifest.get("compose_labels") or {}
        if self.is_bound:
            self.option_rows = pair_rows(self.data, "opt")
            self.label_rows = pair_rows(self.data, "label")
        else:
            self.option_rows = list(manifest["options"].items()) + [("", "")]
            self.label_rows = list(manifest["labels"].items()) + [("", "")]

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name", "")
        host = cleaned.get("host") or self.fields["host"].initial
        cleaned["host"] = host
        if name:
            if problem := validate_volume_name(name):
                self.add_error("name", problem)
            elif Volume.objects.present().filter(name=refs.make_ref(host, name)).exists():
                there = f" on {host}" if self.many_hosts else ""
                self.add_error("name", f"A volume named {name!r} already exists{there}: choose another name.")
        cleaned["ref"] = refs.make_ref(host, name) if name else ""
        driver = cleaned.get("driver", "")
        if self.may_choose and driver != self.manifest_driver and (problem := driver_refusal(driver, host)):
            self.add_error("driver", problem)  # the backup's own driver: the engine's word, later
        for field, prefix, what in (("options", "opt", "driver option"), ("labels", "label", "label")):
            pairs, errors = parse_pairs(self.data.getlist(f"{prefix}_key"), self.data.getlist(f"{prefix}_value"),
                                        what=what)
            cleaned[field] = pairs
            for error in errors:
                self.add_error(None, error)
        if cleaned.get("copy_compose_labels"):
            cleaned["labels"] = {**self.compose_labels, **cleaned["labels"]}
        return cleaned


class RestoreInPlaceForm(SelectedPathsMixin, forms.Form):
    confirm_name = forms.CharField(max_length=255, label="Type the volume's name to confirm", strip=False)
    allow_devices = forms.BooleanField(required=False, label="Allow device nodes", help_text=ALLOW_DEVICES_HELP)
    # Asked for imported backups; the service refuses without it.
    confirm_imported = forms.BooleanField(
        required=False, label="I confirm this archive was not made from this volume by Cargohold, and I want it "
                              "to replace the volume's content",
    )

    paths = PathsField(required=False)

    def __init__(self, *args, backup, volume_name: str, may_choose: bool = True, imported: bool = False,
                 selected=(), **kwargs):
        super().__init__(*args, **kwargs)
        self._init_paths(backup, selected)
        self.volume_name = volume_name
        self.may_choose = may_choose
        self.imported = imported

    def clean_confirm_name(self):
        typed = self.cleaned_data["confirm_name"]
        if typed != self.volume_name:
            raise forms.ValidationError("The name you typed does not match the volume's name.")
        return typed


class ImportForm(forms.Form):
    volume_name = forms.CharField(
        max_length=255, required=False, label="Volume name to record",
        help_text="The name the backup is listed under (and suggested for the restore). "
                  "Empty: taken from the file's name.",
    )

    max_expanded_gib = forms.IntegerField(
        required=False, min_value=1, label="Allow expanding to (GiB, Admins)",
        help_text="Raises the decompression-bomb limit for this import only (IMPORT_MAX_EXPANSION_RATIO and "
                  "IMPORT_MAX_EXPANDED_BYTES). Empty: the usual limits.",
    )

    def clean_volume_name(self):
        name = self.cleaned_data["volume_name"].strip()
        if name and (problem := validate_volume_name(name)):
            raise forms.ValidationError(problem)
        return name
