"""The repositories page (Admins only) and the add_repository command: permissions, CSRF,
secrets never shown again (not in the HTML, the audit trail or the logs), validation,
deletion refused while in use, a generated restic password shown once."""

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import AuditEvent
from jobs.models import Job
from repositories.models import Repository

pytestmark = [pytest.mark.django_db]

KEY_ID = "AKIAROUTINGTEST0001"
SECRET = "routing-secret-Xq93-never-shown"
PASSWORD = "routing-restic-pw-never-shown-71"


@pytest.fixture
def admin(client_for):
    return client_for("Admin")


@pytest.fixture(autouse=True)
def _no_enqueue(monkeypatch):
    from jobs import services as job_services

    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job, queue=None: None)


def _audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("action", "object_name", "params", "error")), default=str)


def _jobs_text() -> str:
    return json.dumps(list(Job.objects.values("params", "error", "progress_message")), default=str)


@pytest.mark.parametrize("role", ["Viewer", "Operator"])
@pytest.mark.parametrize("method,url", [
    ("get", "/repositories/"), ("get", "/repositories/new/"), ("post", "/repositories/new/"),
    ("get", "/repositories/local/edit/"), ("post", "/repositories/local/edit/"),
    ("get", "/repositories/other/delete/"), ("post", "/repositories/other/delete/"),
    ("post", "/repositories/other/default/"), ("post", "/repositories/other/check/"),
])
def test_only_admins_manage_repositories(client_for, role, method, url, tmp_path):
    Repository.objects.create(name="other", url=str(tmp_path / "other"))
    c = client_for(role)
    response = getattr(c, method)(url, {"name": "x", "url": str(tmp_path / "x"), "format": "archive",
                                        "confirm": "other"})
    assert response.status_code == 403
    assert Repository.objects.filter(name="other").exists() and not Repository.objects.filter(name="x").exists()
    assert not Repository.objects.filter(name="other", is_default=True).exists()
    assert not Job.objects.exists()


def test_the_nav_links_the_page_for_admins_only(client_for):
    assert b'href="/repositories/"' in client_for("Admin").get("/backups/").content
    assert b'href="/repositories/"' not in client_for("Operator").get("/backups/").content


def test_posts_need_the_csrf_token(make_user, tmp_path):
    c = Client(enforce_csrf_checks=True)
    c.force_login(make_user("Admin"))
    response = c.post("/repositories/new/", {"name": "csrf", "url": str(tmp_path / "csrf"), "format": "archive"})
    assert response.status_code == 403
    assert not Repository.objects.filter(name="csrf").exists()


def test_an_s3_repositorys_keys_are_never_shown_again_nor_audited_nor_logged(admin, caplog):
    with caplog.at_level(logging.DEBUG):
        response = admin.post("/repositories/new/", {
            "name": "offsite", "format": "archive", "url": "s3:http://127.0.0.1:8333/bucket-one/cargo",
            "region": "us-east-1", "path_style": "on", "access_key_id": KEY_ID, "secret_access_key": SECRET})
        assert response.status_code == 302, response.content.decode()[:2000]
        repo = Repository.objects.get(name="offsite")
        assert repo.secrets()["secret_access_key"] == SECRET and repo.secrets()["access_key_id"] == KEY_ID
        assert SECRET not in repo.secret_access_key_enc and KEY_ID not in repo.access_key_id_enc  # encrypted
        listed = admin.get("/repositories/").content.decode()
        edit = admin.get("/repositories/offsite/edit/").content.decode()
        # Saving again with the secret fields empty keeps them.
        saved = admin.post("/repositories/offsite/edit/", {"url": repo.url, "region": "eu-west-1", "path_style": "on"})
        assert saved.status_code == 302
    for html in (listed, edit, response.content.decode()):
        assert SECRET not in html and KEY_ID not in html
    assert "set — leave empty to keep" in edit and "offsite" in listed
    repo.refresh_from_db()
    assert repo.region == "eu-west-1" and repo.secrets()["secret_access_key"] == SECRET
    assert AuditEvent.objects.filter(action="repository_create", object_name="offsite").exists()
    assert AuditEvent.objects.filter(action="repository_update", object_name="offsite").exists()
    assert SECRET not in _audit_text() and KEY_ID not in _audit_text()
    assert SECRET not in caplog.text and KEY_ID not in caplog.text


def test_a_restic_repository_without_a_password_shows_a_generated_one_once(admin, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        response = admin.post("/repositories/new/", {"name": "vault", "format": "restic",
                                                     "url": str(tmp_path / "vault")})
    assert response.status_code == 200
    repo = Repository.objects.get(name="vault")
    password = repo.secrets()["password"]
    assert len(password) >= 40
    html = response.content.decode()
    assert password in html and "losing it" in html and "never again" in html
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    # Never a second time: not on the list, the edit page, in the audit trail, a job or a log.
    assert password not in admin.get("/repositories/").content.decode()
    assert password not in admin.get("/repositories/vault/edit/").content.decode()
    assert password not in _audit_text() and password not in _jobs_text() and password not in caplog.text
    init = Job.objects.get(kind="repository_init")
    assert init.target == "vault" and init.params == {"repository": repo.pk}


def test_a_restic_repository_with_its_own_password_keeps_it_and_shows_nothing(admin, tmp_path):
    response = admin.post("/repositories/new/", {"name": "vault2", "format": "restic",
                                                 "url": str(tmp_path / "vault2"), "password": PASSWORD})
    assert response.status_code == 302
    assert Repository.objects.get(name="vault2").secrets()["password"] == PASSWORD
    assert PASSWORD not in admin.get("/repositories/vault2/edit/").content.decode()
    assert PASSWORD not in _audit_text()


@pytest.mark.parametrize("url,says", [
    ("relative/path", "absolute path"),
    ("/etc/backups", "system folder"),
    ("s3:ftp://host/bucket", "S3 locations look like"),
    ("s3:http://key:secret@127.0.0.1/bucket", "no credentials"),
    ("s3:http://127.0.0.1:8333/", "names no bucket"),
    ("sftp:host:/srv", "only local paths"),
])
def test_a_bad_location_says_why_and_saves_nothing(admin, url, says):
    response = admin.post("/repositories/new/", {"name": "bad", "format": "archive", "url": url,
                                                 "access_key_id": KEY_ID, "secret_access_key": SECRET})
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Repository.objects.filter(name="bad").exists()
    assert not AuditEvent.objects.filter(action="repository_create").exists()


def test_the_built_in_folder_cannot_be_added_twice(admin, settings):
    response = admin.post("/repositories/new/", {"name": "again", "format": "archive", "url": str(settings.BACKUP_ROOT)})
    assert response.status_code == 400 and "built-in backup folder" in response.content.decode()


def test_delete_is_refused_while_backups_or_policies_use_it(admin, tmp_path):
    from policies.models import BackupPolicy
    from tests.backups.conftest import backup_row

    repo = Repository.objects.create(name="used", url=str(tmp_path / "used"))
    policy = BackupPolicy.objects.create(name="p", selector_kind="names", selector_value="x", copy_to=repo,
                                         keep_last=1)
    page = admin.get("/repositories/used/delete/").content.decode()
    assert "the policy p" in page
    admin.post("/repositories/used/delete/", {"confirm": "used"})
    assert Repository.objects.filter(name="used").exists()
    policy.delete()
    backup_row(volume_name="v", status="succeeded", repository=repo)
    admin.post("/repositories/used/delete/", {"confirm": "used"})
    assert Repository.objects.filter(name="used").exists()
    assert not AuditEvent.objects.filter(action="repository_delete").exists()


def test_delete_asks_for_the_name_then_forgets_it_and_audits(admin, tmp_path):
    Repository.objects.create(name="spare", url=str(tmp_path / "spare"))
    admin.post("/repositories/spare/delete/", {"confirm": "wrong"})
    assert Repository.objects.filter(name="spare").exists()
    response = admin.post("/repositories/spare/delete/", {"confirm": "spare"})
    assert response.status_code == 302 and not Repository.objects.filter(name="spare").exists()
    assert AuditEvent.objects.filter(action="repository_delete", object_name="spare").exists()


def test_make_default_moves_the_default(admin, tmp_path):
    from repositories.selectors import repository_default

    assert repository_default().builtin
    Repository.objects.create(name="next", url=str(tmp_path / "next"))
    admin.post("/repositories/next/default/")
    assert repository_default().name == "next"
    assert Repository.objects.filter(is_default=True).count() == 1


def test_test_connection_starts_a_job(admin, tmp_path):
    Repository.objects.create(name="probe", url=str(tmp_path / "probe"))
    response = admin.post("/repositories/probe/check/")
    job = Job.objects.get(kind="repository_check")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.target == "probe" and job.target_type == "repository"


def test_operators_choose_among_existing_repositories_when_backing_up(client_for, tmp_path):
    from backups.forms import BackupForm

    Repository.objects.create(name="elsewhere", url=str(tmp_path / "elsewhere"))
    form = BackupForm()
    names = [value for value, _ in form.fields["repository"].choices]
    assert "elsewhere" in [str(n) for n in names] and form.initial["repository"] == "local"


# --- the command line ----------------------------------------------------------------------


def test_add_repository_reads_the_password_from_a_file(tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text(PASSWORD + "\n")
    out, err = io.StringIO(), io.StringIO()
    call_command("add_repository", "clirestic", "--url", str(tmp_path / "r"), "--format", "restic",
                 "--password-file", str(secret_file), stdout=out, stderr=err)
    repo = Repository.objects.get(name="clirestic")
    assert repo.is_restic and repo.secrets()["password"] == PASSWORD
    assert PASSWORD not in out.getvalue() + err.getvalue() and PASSWORD not in _audit_text()


def test_add_repository_prints_a_generated_password_once(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    call_command("add_repository", "gen", "--url", str(tmp_path / "g"), "--format", "restic", "--default",
                 stdout=out, stderr=err)
    repo = Repository.objects.get(name="gen")
    assert out.getvalue().strip() == repo.secrets()["password"] and repo.is_default
    assert "losing it loses the backups" in err.getvalue()


def test_add_repository_takes_the_s3_secret_from_stdin(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    call_command("add_repository", "clis3", "--url", "s3:http://127.0.0.1:9/bucket-two", "--access-key-id", KEY_ID,
                 "--secret-access-key-file", "-", stdout=io.StringIO(), stderr=io.StringIO())
    assert Repository.objects.get(name="clis3").secrets() == {"access_key_id": KEY_ID, "secret_access_key": SECRET,
                                                               "password": ""}


def test_add_repository_takes_the_key_id_from_a_file_too(tmp_path):
    (tmp_path / "id").write_text(KEY_ID + "\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    call_command("add_repository", "clis3f", "--url", "s3:http://127.0.0.1:9/bucket-three", "--access-key-id-file",
                 str(tmp_path / "id"), "--secret-access-key-file", str(tmp_path / "secret"),
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert Repository.objects.get(name="clis3f").secrets()["access_key_id"] == KEY_ID


def test_add_repository_refuses_a_bad_url(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="absolute path"):
        call_command("add_repository", "nope", "--url", "not/absolute", stdout=io.StringIO(), stderr=io.StringIO())
    assert not Repository.objects.filter(name="nope").exists()


def test_rotating_the_encryption_key_keeps_every_secret_readable(settings, tmp_path):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    repo = Repository(name="rot", url="s3:http://127.0.0.1:9/bucket-rot")
    repo.set_secrets(access_key_id=KEY_ID, secret_access_key=SECRET)
    repo.save()
    settings.ENCRYPTION_KEYS = [new, old]
    call_command("rotate_repository_secrets", stdout=io.StringIO())
    settings.ENCRYPTION_KEYS = [new]  # the old key dropped
    repo.refresh_from_db()
    assert repo.secrets()["secret_access_key"] == SECRET and repo.secrets()["access_key_id"] == KEY_ID


def test_a_repository_jobs_page_and_a_policys_page_name_the_repositories(admin, tmp_path):
    from policies.models import BackupPolicy

    repo = Repository.objects.create(name="away", url=str(tmp_path / "away"))
    admin.post("/repositories/away/check/")
    job = Job.objects.get(kind="repository_check")
    page = admin.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200 and "repository connection test" in page.content.decode()
    policy = BackupPolicy.objects.create(name="twice", selector_kind="names", selector_value="x", copy_to=repo,
                                         keep_last=1)
    html = admin.get(f"/policies/{policy.pk}/").content.decode()
    assert "the default repository" in html and "copied to <strong data-policy-copy-to>away</strong>" in html


def test_a_policy_cannot_copy_into_its_own_repository(tmp_path):
    from policies.forms import PolicyForm

    repo = Repository.objects.create(name="same", url=str(tmp_path / "same"))
    form = PolicyForm(data={"name": "p", "selector_kind": "names", "selector_value": "x", "cron": "0 2 * * *",
                            "timezone": "UTC", "compression": "zstd", "keep_last": 1, "keep_daily": 0,
                            "keep_weekly": 0, "keep_monthly": 0, "keep_yearly": 0, "max_age_days": 0,
                            "overdue_grace_minutes": 60, "repository": "same", "copy_to": "same"})
    assert not form.is_valid() and "another repository" in " ".join(form.errors["copy_to"])
    form = PolicyForm(data={**form.data, "copy_to": ""})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["repository"] == repo and form.cleaned_data["copy_to"] is None


def test_an_operator_backs_up_into_a_chosen_repository_from_the_page(client_for, tmp_path):
    from backups.models import Backup
    from volumes.models import Volume

    Volume.objects.create(name="shop_db", size_bytes=1)
    Volume.objects.create(name="shop_files", size_bytes=1)
    Repository.objects.create(name="chosen", url=str(tmp_path / "chosen"))
    c = client_for("Operator")
    page = c.get("/volumes/shop_db/backup/").content.decode()
    assert 'value="chosen"' in page and 'value="local" selected' in page
    assert c.post("/volumes/shop_db/backup/", {"compression": "zstd", "repository": "chosen"}).status_code == 302
    assert Backup.objects.get(volume_name="shop_db").repository.name == "chosen"
    response = c.post("/backups/bulk/", {"volume": ["shop_files"], "stop_containers": "default",
                                         "compression": "zstd", "repository": "chosen"})
    assert response.status_code == 302
    assert Backup.objects.get(volume_name="shop_files").repository.name == "chosen"


def test_the_backups_list_says_where_each_backup_is_and_what_it_copies(admin, tmp_path):
    from tests.backups.conftest import backup_row

    repo = Repository.objects.create(name="offsite", url=str(tmp_path / "offsite"))
    original = backup_row(volume_name="v", status="succeeded")
    copy = backup_row(volume_name="v", status="succeeded", repository=repo, copy_of=original)
    html = admin.get("/backups/").content.decode()
    assert f"in offsite, copy of #{original.pk}" in html and 'data-repository="local"' in html
    detail = admin.get(f"/backups/{copy.pk}/").content.decode()
    assert "offsite" in detail and f"a copy of <a href=\"/backups/{original.pk}/\">#{original.pk}</a>" in detail
