"""The Admin-only settings of a policy: its hooks and its restore drills. Separate from
policies.forms.PolicyForm on purpose: a hook is a command in a container (host-level
power), so only a global Admin sees or saves these fields."""

from django import forms

from backups import hooks
from policies.models import BackupPolicy
from project.errors import CargoholdError

MAX_DRILL_DAYS = 366


class PolicyHooksForm(forms.ModelForm):
    class Meta:
        model = BackupPolicy
        fields = ["hook_pre", "hook_post", "hook_user", "hook_timeout_seconds", "hook_continue_on_failure",
                  "drill_every_days", "drill_probe"]
        labels = {
            "hook_pre": "Before the backup", "hook_post": "After the backup", "hook_user": "Run as user",
            "hook_timeout_seconds": "Timeout (seconds)", "hook_continue_on_failure": "Back up even if the pre-hook fails",
            "drill_every_days": "Restore drill every (days)", "drill_probe": "Probe",
        }
        help_texts = {
            "hook_pre": "A command exec'd in each running container that mounts the volume, split like a shell "
                        "would (use sh -c '…' for pipes and redirections). Empty: none.",
            "hook_user": "User (name or uid[:gid]) in the container; empty: the container's own.",
            "hook_timeout_seconds": "0: the server's default (HOOK_TIMEOUT_SECONDS). The command is killed after it.",
            "drill_every_days": "0: never. The newest backup of each covered volume is restored into a scratch "
                                "volume, compared with its manifest and removed.",
            "drill_probe": "Optional shell command run in a throw-away helper container (no network) with the "
                           "restored scratch volume at /data; a non-zero exit fails the drill.",
        }
        widgets = {"hook_pre": forms.Textarea(attrs={"rows": 2}), "hook_post": forms.Textarea(attrs={"rows": 2}),
                   "drill_probe": forms.Textarea(attrs={"rows": 2})}

    def _command(self, name: str) -> str:
        text = (self.cleaned_data.get(name) or "").strip()
        try:
            hooks.parse_command(text, source=self.fields[name].label.lower())
        except CargoholdError as exc:
            raise forms.ValidationError(str(exc)) from None
        return text

    def clean_hook_pre(self):
        return self._command("hook_pre")

    def clean_hook_post(self):
        return self._command("hook_post")

    def clean_hook_user(self):
        user = (self.cleaned_data.get("hook_user") or "").strip()
        if user and not all(ch.isalnum() or ch in "._-:" for ch in user):
            raise forms.ValidationError("A user name or uid[:gid]: letters, digits, . _ - and : only.")
        return user

    def clean_hook_timeout_seconds(self):
        value = self.cleaned_data.get("hook_timeout_seconds") or 0
        if value > hooks.MAX_TIMEOUT_SECONDS:
            raise forms.ValidationError(f"At most {hooks.MAX_TIMEOUT_SECONDS} seconds.")
        return value

    def clean_drill_every_days(self):
        value = self.cleaned_data.get("drill_every_days") or 0
        if value > MAX_DRILL_DAYS:
            raise forms.ValidationError(f"At most {MAX_DRILL_DAYS} days.")
        return value
