"""The one scrubber (project.redact), on the strings that leaked: pure logic, no engine."""

import logging

import pytest

from project import redact
from project.redact import REDACTED, scrubbed, scrubbed_options, scrubbed_text

SECRET = "SuperSecret123"


@pytest.mark.parametrize("text", [
    # The engine's own words when a helper container mounts a CIFS volume.
    "error while mounting volume '/var/lib/docker/volumes/v/_data': failed to mount local volume: mount "
    "//127.0.0.1/nothing:/var/lib/docker/volumes/v/_data, data: username=u,password=SuperSecret123: no such device",
    "username=u,password=SuperSecret123,vers=3.0",
    "username=u,pass=SuperSecret123",
    "o=addr=10.0.0.1,username=u,password=SuperSecret123,uid=1000",
    "map[device://127.0.0.1/share o:username=u,password=SuperSecret123 type:cifs]",
    "map[password:SuperSecret123 type:cifs]",
    "mount error(13): password = SuperSecret123 refused",
    "username=u%SuperSecret123,vers=3.0",
    "//u:SuperSecret123@127.0.0.1/share",
    "smb://u:SuperSecret123@127.0.0.1/share",
    "nfs://user:SuperSecret123@nas/export is unreachable",
    "//u%SuperSecret123@127.0.0.1/share",
    'options {"o": "username=u,password=SuperSecret123", "type": "cifs"}',
    "password='SuperSecret123 with space' was refused",
    "secret_key=SuperSecret123&region=x",
    "api_token=SuperSecret123",
    "PASSWORD=SuperSecret123",
    "credentials=SuperSecret123",
])
def test_secret_values_in_free_text_are_masked(text):
    clean = scrubbed_text(text)
    assert SECRET not in clean and "Secret123" not in clean
    assert REDACTED in clean


def test_a_password_holding_colons_and_doubled_commas_is_masked_whole():
    for password in ("abc:def:SuperSecret123", "a,,b,,SuperSecret123", "p@ss:SuperSecret123"):
        clean = scrubbed_text(f"data: username=u,password={password}: no such device")
        assert "SuperSecret123" not in clean, clean
        assert clean.endswith(": no such device"), clean


def test_url_userinfo_with_an_at_sign_in_the_password_is_masked_whole():
    clean = scrubbed_text("//u:p@SuperSecret123@127.0.0.1/share")
    assert SECRET not in clean and clean == f"//u:{REDACTED}@127.0.0.1/share"


def test_the_message_stays_useful():
    text = ("failed to mount local volume: mount //127.0.0.1/nothing:/var/lib/docker/volumes/v/_data, "
            "data: username=u,password=SuperSecret123,vers=3.0: no such device")
    assert scrubbed_text(text) == (
        "failed to mount local volume: mount //127.0.0.1/nothing:/var/lib/docker/volumes/v/_data, "
        f"data: username=u,password={REDACTED},vers=3.0: no such device"
    )


@pytest.mark.parametrize("text", [
    "Creating a helper container for volume shop-data: no such image busybox:stable",
    "mount //127.0.0.1/nothing:/var/lib/docker/volumes/v/_data: no such device",
    "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host",
    "type=cifs,device=//127.0.0.1/share,o=username=u,vers=3.0",
    "sha256:0123abcd is the image",
    "",
])
def test_text_without_secrets_is_unchanged(text):
    assert scrubbed_text(text) == text


def test_nested_params_secret_keys_and_mount_strings():
    params = {
        "driver": "local",
        "options": {"type": "cifs", "o": f"username=u,password={SECRET},vers=3", "device": "//127.0.0.1/x",
                    "password": SECRET, "db_password": SECRET, "empty_password": ""},
        "list": [f"password={SECRET}", {"token": SECRET}],
        "count": 3,
    }
    clean = scrubbed(params)
    assert SECRET not in repr(clean)
    assert clean["options"]["o"] == f"username=u,password={REDACTED},vers=3"
    assert clean["options"]["password"] == REDACTED and clean["options"]["device"] == "//127.0.0.1/x"
    assert clean["options"]["empty_password"] == ""
    assert clean["count"] == 3 and clean["driver"] == "local"
    assert SECRET in params["options"]["o"]  # a copy: the caller's dict is untouched


def test_scrubbed_options_name_what_was_masked_for_the_manifest():
    options = {"type": "cifs", "o": f"username=u,password={SECRET}", "device": f"//u:{SECRET}@h/s",
               "password": SECRET, "size": "10m"}
    clean, redacted = scrubbed_options(options)
    assert SECRET not in repr(clean)
    assert sorted(redacted) == ["device", "o", "password"]
    assert clean["type"] == "cifs" and clean["size"] == "10m"


def test_log_records_are_scrubbed_whoever_formats_them(caplog):
    redact.install_log_scrubbing()
    log = logging.getLogger("tests.secrets")
    with caplog.at_level(logging.INFO, logger="tests.secrets"):
        log.info("mount failed: %s", f"data: username=u,password={SECRET}: no such device")
        try:
            raise RuntimeError(f"o=username=u,password={SECRET}")
        except RuntimeError:
            log.exception("job crashed")
    text = caplog.text
    assert "job crashed" in text and "mount failed" in text and "RuntimeError" in text
    assert SECRET not in text


@pytest.mark.django_db
def test_rows_stored_before_the_scrubber_show_no_secret_on_pages(client_for):
    """The audit trail is append-only: an event written before this change keeps its text,
    but no page shows it (nor a job's or a volume's old error)."""
    from accounts.models import AuditEvent
    from jobs.models import Job
    from volumes.models import Volume

    leaked = f"mount //h/s, data: username=u,password={SECRET}: no such device"
    AuditEvent.objects.create(action="backup_finish", object_type="volume", object_name="share", result="error",
                              error=leaked, params={"options": {"o": f"username=u,password={SECRET}"}})
    job = Job.objects.create(kind="backup", target="share", status="failed", error=leaked,
                             result={"message": leaked})
    Volume.objects.create(name="share", last_error=leaked)
    pages = [client_for("Admin").get("/audit/"), client_for("Viewer").get(f"/jobs/{job.pk}/"),
             client_for("Viewer").get("/volumes/share/"), client_for("Viewer").get("/")]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200 and SECRET not in html, page.request["PATH_INFO"]
    assert "password=***" in pages[0].content.decode() and "no such device" in pages[1].content.decode()
