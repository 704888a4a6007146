"""The form of "Copy or move to another host…" (hosts.views_transfers)."""

from __future__ import annotations

from django import forms

from volumes.forms import NAME_HELP, validate_volume_name


class TransferForm(forms.Form):
    target_host = forms.ChoiceField(label="To the host")
    target_name = forms.CharField(label="New volume's name", max_length=255, help_text=NAME_HELP)
    repository = forms.ChoiceField(label="Through the repository", required=False,
                                   help_text="Both hosts' workers must reach it: the backup is written there by "
                                             "the source's worker and read back by the target's.")
    stop_containers = forms.BooleanField(label="Stop the containers that use it during the backup", required=False)
    remove_source = forms.BooleanField(label="Remove the source after a successful copy", required=False)

    def __init__(self, *args, hosts=(), repositories=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target_host"].choices = [(h.name, h.name) for h in hosts]
        self.fields["repository"].choices = [("", "the default repository")] + [
            (r.name, r.name + (" (default)" if r.is_default else "")) for r in repositories]

    def clean_target_name(self):
        name = self.cleaned_data["target_name"].strip()
        if problem := validate_volume_name(name):
            raise forms.ValidationError(problem)
        return name
