"""Forms of the volume lifecycle pages; the management commands validate through them too.

Driver options and labels arrive as parallel lists of key/value inputs (`opt_key` /
`opt_value`, `label_key` / `label_value`): rows with both cells empty are ignored.
"""

from __future__ import annotations

import re

from django import forms

from hosts import refs
from volumes.models import EngineStatus, Volume

# What the engine accepts (moby's volume name validation).
VOLUME_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # use fullmatch: `$` would let "\n" through
NAME_HELP = "Letters, digits, _ . - ; at least two characters, starting with a letter or digit."
MAX_ROWS = 50
_BAD_KEY_CHARS = re.compile(r"[\s=\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Presets for the driver options operators use most; the page's script fills the rows
# from this same data (json_script), and without JS the preset buttons submit the form
# and the server fills them.
PRESETS: dict[str, dict] = {
    "tmpfs": {
        "label": "tmpfs (memory)",
        "options": [("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=100m")],
    },
    "bind": {
        "label": "bind (host folder)",
        "options": [("type", "none"), ("o", "bind"), ("device", "/srv/data")],
    },
    "nfs": {
        "label": "NFS",
        "options": [("type", "nfs"), ("o", "addr=nfs.example.com,rw,nfsvers=4"), ("device", ":/export/path")],
    },
    "cifs": {
        "label": "CIFS / SMB",
        "options": [
            ("type", "cifs"),
            ("o", "addr=smb.example.com,username=USER,password=PASSWORD,vers=3.0"),
            ("device", "//smb.example.com/share"),
        ],
    },
}


def validate_volume_name(name: str) -> str | None:
    """The reason `name` is not a valid volume name, or None."""
    if len(name) > 255:
        return "A volume name is at most 255 characters."
    if not VOLUME_NAME_RE.fullmatch(name):
        return f"{name!r} is not a valid volume name. {NAME_HELP}"
    return None


def validate_volume_ref(ref: str) -> str | None:
    """The reason `ref` is not a volume reference (hosts.refs: `name` or `host:name`), or None."""
    host, name = refs.split_ref(ref)
    if not refs.HOST_NAME.match(host):
        return f"{ref!r} names no valid host."
    return validate_volume_name(name)


def parse_pairs(keys: list[str], values: list[str], *, what: str) -> tuple[dict[str, str], list[str]]:
    """Rows of key/value inputs -> (dict, errors). Nothing is guessed: each bad row is an error."""
    pairs: dict[str, str] = {}
    errors: list[str] = []
    rows = max(len(keys), len(values))
    if rows > MAX_ROWS:
        return {}, [f"At most {MAX_ROWS} {what} rows."]
    for i in range(rows):
        key = (keys[i] if i < len(keys) else "").strip()
        value = (values[i] if i < len(values) else "").strip()
        if not key and not value:
            continue
        where = f"{what.capitalize()} row {i + 1}"
        if not key:
            errors.append(f"{where}: a value without a key.")
        elif "=" in key:
            errors.append(f"{where}: the key {key!r} contains '='; put the key and its value in separate cells.")
        elif _BAD_KEY_CHARS.search(key):
            errors.append(f"{where}: the key {key!r} contains spaces or control characters.")
        elif len(key) > 255:
            errors.append(f"{where}: the key is longer than 255 characters.")
        elif key in pairs:
            errors.append(f"{where}: the key {key!r} is given twice.")
        elif _CONTROL.search(value):
            errors.append(f"{where}: the value of {key!r} contains control characters.")
        elif len(value) > 4096:
            errors.append(f"{where}: the value of {key!r} is longer than 4096 characters.")
        else:
            pairs[key] = value
    return pairs, errors


def known_drivers(host_name: str | None = None) -> list[str]:
    """Volume drivers the engines reported at their last sync (the web never asks an
    engine): those of `host_name`, or (None) of any host, for a form whose host is chosen
    in the same form (driver_refusal then checks the pair). `local` always."""
    statuses = EngineStatus.objects.all() if host_name is None else EngineStatus.objects.filter(host__name=host_name)
    plugins = []
    for reported in statuses.values_list("volume_plugins", flat=True):
        plugins += [p for p in (reported if isinstance(reported, list) else [])
                    if isinstance(p, str) and p and p not in plugins]
    plugins = sorted(plugins)
    return plugins if "local" in plugins else ["local", *plugins]


def driver_refusal(driver: str, host_name: str) -> str | None:
    """Why `driver` cannot be chosen for a volume on `host_name` (None: it can)."""
    if driver and driver not in known_drivers(host_name):
        return f"The engine of the host {host_name} reported no volume driver named {driver} at its last sync."
    return None


class VolumeCreateForm(forms.Form):
    name = forms.CharField(required=False, max_length=255, help_text=NAME_HELP)
    generate_name = forms.BooleanField(required=False, label="Generate a name")
    driver = forms.ChoiceField(
        initial="local",
        error_messages={"invalid_choice": "The engine has no volume driver named %(value)s (see the list)."},
    )
    check_mount = forms.BooleanField(
        required=False, initial=True, label="Mount it once after creating",
        help_text="Shows a driver error (NFS server down, missing host folder) now rather than at first use.",
    )

    host = forms.ChoiceField(required=False, label="Host", help_text="The Docker host whose engine creates it.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["driver"].choices = [(d, d) for d in known_drivers()]
        from hosts.selectors import host_names

        names = host_names()
        self.fields["host"].choices = [(n, n) for n in names]
        self.fields["host"].initial = refs.default_host_name()
        if len(names) < 2:
            self.fields["host"].widget = forms.HiddenInput()
        data = self.data if self.is_bound else None
        self.option_rows = pair_rows(data, "opt")
        self.label_rows = pair_rows(data, "label")

    @classmethod
    def with_preset(cls, data, preset: str) -> "VolumeCreateForm":
        """An unbound form keeping what was typed, with a preset's option rows (no-JS buttons)."""
        form = cls(initial={
            "name": data.get("name", ""),
            "generate_name": data.get("generate_name") == "on",
            "driver": data.get("driver", "local"),
            "check_mount": data.get("check_mount") == "on",
        })
        form.label_rows = pair_rows(data, "label")
        form.option_rows = pair_rows(data, "opt")
        if preset in PRESETS:
            form.option_rows = [*PRESETS[preset]["options"], ("", "")]
        return form

    def clean_name(self):
        return self.cleaned_data.get("name", "")

    def clean(self):
        cleaned = super().clean()
        name = cleaned.get("name", "")
        generate = cleaned.get("generate_name", False)
        if generate and name:
            self.add_error("name", "Either type a name or tick “Generate a name”, not both.")
        elif not generate and not name:
            self.add_error("name", "Type a name, or tick “Generate a name”.")
        elif name:
            problem = validate_volume_name(name)
            if problem:
                self.add_error("name", problem)
            elif Volume.objects.present().filter(name=refs.make_ref(cleaned.get("host") or "", name)).exists():
                self.add_error("name", f"A volume named {name!r} already exists there.")
        cleaned["host"] = cleaned.get("host") or refs.default_host_name()
        if problem := driver_refusal(cleaned.get("driver", ""), cleaned["host"]):
            self.add_error("driver", problem)
        for field, prefix, what in (("options", "opt", "driver option"), ("labels", "label", "label")):
            pairs, errors = parse_pairs(
                self.data.getlist(f"{prefix}_key"), self.data.getlist(f"{prefix}_value"), what=what
            )
            cleaned[field] = pairs
            for error in errors:
                self.add_error(None, error)
        return cleaned


def pair_rows(data, prefix: str) -> list[tuple[str, str]]:
    """The rows to show: what was typed, plus empty ones to type into (no JS needed)."""
    rows = []
    if data is not None:
        keys, values = data.getlist(f"{prefix}_key"), data.getlist(f"{prefix}_value")
        rows = [(k, values[i] if i < len(values) else "") for i, k in enumerate(keys[:MAX_ROWS])]
        rows = [r for r in rows if r[0] or r[1]]
    return rows + [("", "")] * max(1, 3 - len(rows))


class VolumeRemoveForm(forms.Form):
    confirm_name = forms.CharField(max_length=255, label="Type the volume's name to confirm", strip=False)

    def __init__(self, *args, volume: Volume, **kwargs):
        super().__init__(*args, **kwargs)
        self.volume = volume

    def clean_confirm_name(self):
        typed = self.cleaned_data["confirm_name"]
        if typed != self.volume.name:
            raise forms.ValidationError("The name you typed does not match the volume's name.")
        return typed


class PruneConfirmForm(forms.Form):
    """The exact list the preview showed; the worker re-checks each one against the engine."""

    include_named = forms.BooleanField(required=False)

    def clean(self):
        cleaned = super().clean()
        names = [n.strip() for n in self.data.getlist("volume") if n.strip()]
        if not names:
            raise forms.ValidationError("There is nothing to prune.")
        if len(names) > 10_000:
            raise forms.ValidationError("Too many volumes in one prune (at most 10,000).")
        bad = [n for n in names if validate_volume_ref(n)]
        if bad:
            raise forms.ValidationError(f"Not valid volume names: {', '.join(repr(n) for n in bad[:5])}.")
        cleaned["names"] = list(dict.fromkeys(names))
        return cleaned
