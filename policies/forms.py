import re

from django import forms
from django.core.validators import MaxValueValidator

from policies import cron, selection
from policies.models import BackupPolicy, NotificationSettings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")
MAX_COUNT = 10_000


def present_volume_names(volumes=None) -> list[str]:
    """`volumes`: the queryset to pick from (a team's, accounts.scoping); None: all."""
    from volumes.models import Volume

    return list((Volume.objects.all() if volumes is None else volumes).present().order_by("name").values_list("name", flat=True))


def selection_from(kind: str, value: str, picked: list[str] = ()) -> selection.Selection:
    """The selection a form describes: for names, the typed names and the picked ones
    together. Raises selection.SelectionError saying what is wrong."""
    if kind == selection.NAMES and picked:
        value = "\n".join([value or "", *picked])
    return selection.parse(kind, value)


class PolicyForm(forms.ModelForm):
    # A text field with a datalist of the ~600 zones: type "Berl" and pick, not scroll a select.
    timezone = forms.CharField(initial="UTC", max_length=64,
                               widget=forms.TextInput(attrs={"list": "timezones", "autocomplete": "off"}))
    # The volume picker (names): the mirror's volumes as checkboxes; the text field keeps
    # names the engine does not have yet.
    pick = forms.MultipleChoiceField(required=False, choices=(), widget=forms.CheckboxSelectMultiple,
                                     label="Pick volumes")

    class Meta:
        model = BackupPolicy
        fields = [
            "name", "selector_kind", "selector_value", "cron", "timezone", "compression", "stop_containers",
            "verify_after_backup", "enabled", "keep_last", "keep_daily", "keep_weekly", "keep_monthly",
            "keep_yearly", "max_age_days", "overdue_grace_minutes", "repository", "copy_to",
        ]
        labels = {
            "selector_kind": "Which volumes",
            "selector_value": "Selection",
            "cron": "Schedule (cron)",
            "stop_containers": "Stop the containers using each volume during its backup",
            "verify_after_backup": "Verify each archive again after the backup (a second full read)",
            "keep_last": "Keep the last",
            "keep_daily": "Daily",
            "keep_weekly": "Weekly",
            "keep_monthly": "Monthly",
            "keep_yearly": "Yearly",
            "max_age_days": "Keep everything younger than (days)",
            "overdue_grace_minutes": "Overdue after the schedule's interval plus (minutes)",
            "repository": "Repository",
            "copy_to": "Copy each backup to",
        }
        help_texts = {
            "selector_value": "Names: one per line or separated by commas; host:name for a volume of another "
                              "host. Label: key=value or key (several separated by commas, all must match). "
                              "Compose: the project's name. Labels and Compose projects match on every host.",
            "cron": "Five fields: minute hour day-of-month month day-of-week, e.g. 0 2 * * * (daily at 02:00). "
                    "@hourly, @daily, @weekly, @monthly work too.",
            "stop_containers": "Otherwise each volume's own default applies (its cargohold.stop-during-backup label).",
            "repository": "Where its backups are stored; empty: whichever repository is the default when it runs.",
            "copy_to": "A second repository (off-site) that receives a verified copy of each successful backup; "
                       "retention applies to each repository on its own.",
        }
        widgets = {
            "selector_value": forms.Textarea(attrs={"rows": 2, "cols": 50}),
            "cron": forms.TextInput(attrs={"placeholder": "0 2 * * *", "class": "mono"}),
        }

    def __init__(self, *args, volumes=None, **kwargs):
        super().__init__(*args, **kwargs)
        names = present_volume_names(volumes)
        self.fields["pick"].choices = [(n, n) for n in names]
        # One problem, one message: an empty selection is reported by the selection's own rule.
        self.fields["selector_value"].required = False
        if not self.is_bound and self.instance.pk and self.instance.selector_kind == selection.NAMES:
            chosen = [n for n in re.split(r"[\s,]+", self.instance.selector_value) if n]
            known = set(names)
            self.initial["pick"] = [n for n in chosen if n in known]
            self.initial["selector_value"] = "\n".join(n for n in chosen if n not in known)
        from backups.forms import RepositoryChoiceField

        self.fields["repository"] = RepositoryChoiceField(
            required=False, label="Repository", empty_label="(the default repository)",
            help_text=self.Meta.help_texts["repository"])
        self.fields["copy_to"] = RepositoryChoiceField(
            required=False, label="Copy each backup to", empty_label="(no copy)",
            help_text=self.Meta.help_texts["copy_to"])
        for name in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "max_age_days"):
            self.fields[name].widget.attrs.update({"min": 0, "max": MAX_COUNT, "class": "count"})
            self.fields[name].validators.append(MaxValueValidator(MAX_COUNT))

    def clean_name(self):
        name = " ".join(self.cleaned_data["name"].split())
        if not NAME.match(name):
            raise forms.ValidationError(
                "Use letters, digits, spaces, dots, dashes and underscores (starting with a letter or digit)."
            )
        clash = BackupPolicy.objects.filter(name__iexact=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("A policy with this name exists already.")
        return name

    def clean_cron(self):
        try:
            return cron.parse(self.cleaned_data["cron"]).expression
        except cron.CronError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_timezone(self):
        zone = self.cleaned_data["timezone"].strip()
        if zone not in set(cron.timezones()):
            raise forms.ValidationError(f"Unknown time zone {zone[:64]!r}: pick one from the list (e.g. Europe/Berlin).")
        return zone

    def clean_overdue_grace_minutes(self):
        value = self.cleaned_data["overdue_grace_minutes"]
        if value > 7 * 24 * 60:
            raise forms.ValidationError("At most a week (10080 minutes).")
        return value

    def clean(self):
        data = super().clean()
        kind, value = data.get("selector_kind"), data.get("selector_value", "")
        if kind:
            try:
                parsed = selection_from(kind, value, data.get("pick") or [])
            except selection.SelectionError as exc:
                self.add_error("selector_value", str(exc))
            else:
                if kind == selection.NAMES:
                    data["selector_value"] = "\n".join(parsed.names)
        self._clean_copy(data)
        counts = [data.get(n) or 0 for n in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly",
                                              "keep_yearly", "max_age_days")]
        if not any(counts) and not any(n in self.errors for n in ("keep_last", "max_age_days")):
            raise forms.ValidationError(
                "These retention rules would keep nothing: set at least one of keep last, daily, weekly, "
                "monthly, yearly or max age."
            )
        return data

    def _clean_copy(self, data) -> None:
        copy_to = data.get("copy_to")
        if copy_to is None:
            return
        from repositories.selectors import repository_default

        source = data.get("repository") or repository_default()
        if copy_to.pk == source.pk:
            self.add_error("copy_to", "The copy must go to another repository than the backups themselves.")
        elif copy_to.is_restic or source.is_restic:
            self.add_error("copy_to", "Copies between restic repositories, or between restic and archive "
                                      "repositories, are not supported yet: choose two archive repositories.")


class NotificationSettingsForm(forms.ModelForm):
    webhook_url = forms.URLField(required=False, max_length=1000, assume_scheme="https", label="Webhook URL")
    class Meta:
        model = NotificationSettings
        fields = ["email_enabled", "email_to", "webhook_enabled", "webhook_url", "on_failure", "on_overdue",
                  "on_success"]
        labels = {
            "email_enabled": "Send email",
            "email_to": "To",
            "webhook_enabled": "Call a webhook",
            "on_failure": "When a scheduled run fails or is missed",
            "on_overdue": "When a volume becomes overdue",
            "on_success": "When a scheduled run succeeds",
        }
        widgets = {"email_to": forms.Textarea(attrs={"rows": 2, "cols": 50})}
        help_texts = {"webhook_url": "Receives a JSON POST (with a \"text\" field, as Slack and Mattermost expect)."}

    def clean_email_to(self):
        text = self.cleaned_data.get("email_to", "")
        addresses = [a for a in re.split(r"[\s,;]+", text) if a]
        validator = forms.EmailField()
        for address in addresses:
            try:
                validator.clean(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"Not an email address: {address[:100]!r}.") from None
        return ", ".join(addresses)

    def clean_webhook_url(self):
        url = self.cleaned_data.get("webhook_url", "").strip()
        if url and not url.lower().startswith(("http://", "https://")):
            raise forms.ValidationError("The URL must start with http:// or https://.")
        return url

    def clean(self):
        data = super().clean()
        if data.get("email_enabled") and not data.get("email_to") and "email_to" not in self.errors:
            self.add_error("email_to", "Enter at least one address, or turn email off.")
        if data.get("webhook_enabled") and not data.get("webhook_url") and "webhook_url" not in self.errors:
            self.add_error("webhook_url", "Enter the URL, or turn the webhook off.")
        return data
