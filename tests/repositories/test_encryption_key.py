"""Where the key for secrets at rest comes from: processes of one deployment must agree
(Compose's web and worker share DJANGO_SECRET_KEY, not a folder), and a stored secret
must not decrypt under another installation's key."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ("import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'project.settings'; "
          "from django.conf import settings; print(settings.ENCRYPTION_KEYS[0])")


def key_of(tmp_path, name: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("CARGOHOLD_ENCRYPTION_KEY", "DJANGO_SECRET_KEY")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**clean, "CARGOHOLD_VAR_DIR": str(tmp_path / name), **env})
    return out.stdout.strip()


def test_processes_sharing_the_secret_key_but_no_folder_derive_the_same_key(tmp_path):
    web = key_of(tmp_path, "web", DJANGO_SECRET_KEY="shared-secret")
    worker = key_of(tmp_path, "worker", DJANGO_SECRET_KEY="shared-secret")
    other = key_of(tmp_path, "other", DJANGO_SECRET_KEY="another-secret")
    assert web == worker != other
    assert not (tmp_path / "web" / "encryption_key").exists()  # nothing written: it comes from the environment


def test_an_explicit_key_wins_and_without_any_a_folder_keeps_one(tmp_path):
    explicit = "x" * 43 + "="
    assert key_of(tmp_path, "a", DJANGO_SECRET_KEY="s", CARGOHOLD_ENCRYPTION_KEY=explicit) == explicit
    first = key_of(tmp_path, "b")
    assert first and key_of(tmp_path, "b") == first == (tmp_path / "b" / "encryption_key").read_text()
