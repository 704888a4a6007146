"""The repositories page's forms. Secrets are write-only: PasswordInput never renders a
value back, and the edit form says "set — leave empty to keep" instead."""

from django import forms

from repositories.models import Repository

SECRET = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


class RepositoryForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Lowercase letters, digits, - and _; used by the CLI "
                                                    "(backup_volume --repository NAME).")
    format = forms.ChoiceField(choices=Repository.Format.choices, initial=Repository.Format.ARCHIVE)
    url = forms.CharField(label="Location", max_length=1024,
                          widget=forms.TextInput(attrs={"class": "mono", "size": 60,
                                                        "placeholder": "/srv/backups2 or s3:https://HOST/BUCKET/PREFIX"}),
                          help_text="A folder on the worker's machine, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] "
                                    "(restic's syntax, for both formats).")
    region = forms.CharField(max_length=64, required=False, help_text="S3 only; empty for most self-hosted servers.")
    path_style = forms.BooleanField(required=False, initial=True, label="Path-style S3 URLs",
                                    help_text="Self-hosted servers (MinIO, SeaweedFS, Garage) want this.")
    access_key_id = forms.CharField(max_length=1024, required=False, widget=SECRET, label="Access key id")
    secret_access_key = forms.CharField(max_length=1024, required=False, widget=SECRET, label="Secret access key")
    password = forms.CharField(max_length=1024, required=False, widget=SECRET, label="restic password",
                               strip=False,
                               help_text="restic only. Leave empty and Cargohold generates a strong one and shows "
                                         "it once.")
    verify_read_subset = forms.CharField(max_length=16, required=False, label="Verify reads (restic)",
                                         help_text="restic check --read-data-subset, e.g. 5% (empty: the default).")
    is_default = forms.BooleanField(required=False, label="Make it the default repository")

    def __init__(self, *args, instance: Repository | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance = instance
        if instance is not None:
            del self.fields["name"], self.fields["format"], self.fields["is_default"]
            if not self.is_bound:
                self.initial.update(url=instance.url, region=instance.region, path_style=instance.path_style,
                                    verify_read_subset=instance.verify_read_subset)
            for name, is_set in (("access_key_id", bool(instance.access_key_id_enc)),
                                 ("secret_access_key", bool(instance.secret_access_key_enc)),
                                 ("password", bool(instance.password_enc))):
                if is_set:
                    self.fields[name].help_text = "set — leave empty to keep"
            if "password" in self.fields and instance.is_restic:
                self.fields["password"].help_text += (
                    ". A new one here only tells Cargohold the password: change the repository's own first "
                    "(restic key passwd), or Cargohold can no longer open it.")
            if instance.builtin:
                self.fields["url"].disabled = True
                self.fields["url"].help_text = "The built-in folder is BACKUP_ROOT (a setting)."
            if not instance.is_restic:
                del self.fields["password"], self.fields["verify_read_subset"]
