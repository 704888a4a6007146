"""The file browser of a backup's page (index rows made here; test_files_engine.py makes
them with a real backup): folders, paging, search, bad paths, roles and teams, and the
selection carried to the restore forms."""

import pytest

from accounts.models import Team, TeamMembership, TeamRule
from backups import files_selectors as files
from backups.models import Backup, BackupEntry
from tests.backups.conftest import backup_row
from volumes.models import Volume

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_enqueue(no_enqueue, backup_root):
    """Pages only queue jobs; nothing here needs a worker."""


def entry(backup, path, kind="f", **fields):
    parent, _, name = path.rpartition("/")
    defaults = {"size": 5, "mode": 0o755 if kind == "d" else 0o644, "uid": 1000, "gid": 1001,
                "mtime": 1714559000.0}
    return BackupEntry.objects.create(backup=backup, path=path, parent=parent, name=name, kind=kind,
                                      **{**defaults, **fields})


@pytest.fixture
def backup():
    volume = Volume.objects.create(name="shop_db", size_bytes=12345)
    b = backup_row(volume=volume, volume_name="shop_db", status=Backup.Status.SUCCEEDED,
                   key="shop_db/shop_db-20240501T102030Z.tar.zst", sha256="0" * 64)
    entry(b, "app", "d")
    entry(b, "app/config.yml", size=2048)
    entry(b, "app/Secrets", "d", mode=0o700)
    entry(b, "app/Secrets/KEY.pem", size=100, mode=0o4600)
    entry(b, "zeta.txt")
    entry(b, "alpha", "d")
    entry(b, "link", "l", link="app/config.yml", mode=0o777)
    return b


def rows_of(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('data-path="')[1:]]


# --- listing --------------------------------------------------------------------------------


def test_root_lists_folders_first_then_files_with_their_columns(client_for, backup):
    response = client_for("Viewer").get(f"/backups/{backup.pk}/files/")

    html = response.content.decode()
    assert response.status_code == 200
    assert rows_of(html) == ["alpha", "app", "link", "zeta.txt"]
    assert "drwxr-xr-x" in html and "lrwxrwxrwx" in html and "-rw-r--r--" in html
    assert "1000:1001" in html and "2024-05-01 10:23:20" in html


def test_a_folder_shows_its_entries_breadcrumbs_and_human_sizes(client_for, backup):
    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/?path=app").content.decode()

    assert rows_of(html) == ["app/Secrets", "app/config.yml"]
    assert "2\xa0KiB" in html and "drwx------" in html
    assert f'href="/backups/{backup.pk}/files/"' in html  # the root crumb


def test_mode_text_shows_setuid_bits(backup):
    assert files.mode_text(BackupEntry.objects.get(path="app/Secrets/KEY.pem")) == "-rwS------"


def test_htmx_swaps_only_the_listing(client_for, backup):
    response = client_for("Viewer").get(f"/backups/{backup.pk}/files/?path=app", HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="file-listing">') and "<html" not in html
    assert rows_of(html) == ["app/Secrets", "app/config.yml"]


def test_folder_links_have_a_real_href_and_an_htmx_swap(client_for, backup):
    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/").content.decode()

    assert f'<a class="folder" href="/backups/{backup.pk}/files/?path=app">' in html
    assert '<table class="grid files" hx-boost="true" hx-target="#file-listing" hx-swap="outerHTML">' in html


def test_a_big_folder_is_paged(client_for, backup):
    entry(backup, "big", "d")
    BackupEntry.objects.bulk_create(
        BackupEntry(backup=backup, path=f"big/f{i:05d}", parent="big", name=f"f{i:05d}", kind="f")
        for i in range(files.PER_PAGE + 10))
    client = client_for("Viewer")

    first = client.get(f"/backups/{backup.pk}/files/?path=big").content.decode()
    second = client.get(f"/backups/{backup.pk}/files/?path=big&page=2").content.decode()

    assert len(rows_of(first)) == files.PER_PAGE and rows_of(first)[0] == "big/f00000"
    assert rows_of(second) == [f"big/f{i:05d}" for i in range(files.PER_PAGE, files.PER_PAGE + 10)]
    assert "Page 2 of 2" in second and f"{files.PER_PAGE + 10} entries" in first


# --- search ---------------------------------------------------------------------------------


def test_search_is_case_insensitive_and_names_each_hits_folder(client_for, backup):
    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/?q=secrets").content.decode()

    assert rows_of(html) == ["app/Secrets"]
    assert f'href="/backups/{backup.pk}/files/?path=app"' in html


def test_search_is_limited(client_for, backup, monkeypatch):
    monkeypatch.setattr(files, "SEARCH_LIMIT", 3)
    BackupEntry.objects.bulk_create(
        BackupEntry(backup=backup, path=f"many/hit{i}", parent="many", name=f"hit{i}", kind="f") for i in range(5))

    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/?q=HIT").content.decode()

    assert len(rows_of(html)) == 3 and "refine the search" in html


def test_search_of_another_backup_finds_nothing_of_this_one(client_for, backup):
    other = backup_row(volume_name="shop_db", status=Backup.Status.SUCCEEDED, key="x")
    entry(other, "unique-name.txt")

    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/?q=unique").content.decode()

    assert rows_of(html) == [] and "No name in this backup holds" in html


# --- paths from the query string --------------------------------------------------------------


@pytest.mark.parametrize("path", ["../etc", "app/../..", "./app", "a\x00b", "x" * (files.MAX_PATH_CHARS + 1)])
def test_bad_paths_are_refused_with_400(client_for, backup, path):
    response = client_for("Viewer").get(f"/backups/{backup.pk}/files/", {"path": path})

    assert response.status_code == 400
    assert 'data-files="bad-path"' in response.content.decode() and rows_of(response.content.decode()) == []


def test_unknown_path_says_not_in_this_backup_with_404(client_for, backup):
    response = client_for("Viewer").get(f"/backups/{backup.pk}/files/?path=nope/deeper")

    assert response.status_code == 404
    assert "is not in this backup" in response.content.decode()


def test_a_files_path_is_no_folder(client_for, backup):
    response = client_for("Viewer").get(f"/backups/{backup.pk}/files/?path=app/config.yml")

    assert response.status_code == 404 and "not a folder" in response.content.decode()


def test_slashes_are_normalised(client_for, backup):
    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/?path=/app//").content.decode()

    assert rows_of(html) == ["app/Secrets", "app/config.yml"]


def test_a_backup_without_index_rows_says_so(client_for):
    old = backup_row(volume_name="shop_db", status=Backup.Status.SUCCEEDED, key="x")

    html = client_for("Viewer").get(f"/backups/{old.pk}/files/").content.decode()

    assert "No file index for this backup (made before file indexes)" in html


# --- roles and teams ------------------------------------------------------------------------


def test_viewers_browse_but_get_no_download_links_or_checkboxes(client_for, backup):
    html = client_for("Viewer").get(f"/backups/{backup.pk}/files/").content.decode()

    assert "files/download/" not in html and 'name="paths"' not in html


def test_operators_get_downloads_and_restore_selected_but_not_in_place(client_for, backup):
    html = client_for("Operator").get(f"/backups/{backup.pk}/files/").content.decode()

    assert f"/backups/{backup.pk}/files/download/?path=app" in html
    assert 'name="paths" value="zeta.txt"' in html and "restore-selected" in html
    assert "restore-selected-in-place" not in html


def test_admins_may_restore_the_selection_in_place(client_for, backup):
    html = client_for("Admin").get(f"/backups/{backup.pk}/files/").content.decode()

    assert f'formaction="/backups/{backup.pk}/restore-in-place/"' in html


def test_no_role_is_403_and_unknown_backup_404(client_for, backup):
    assert client_for(None).get(f"/backups/{backup.pk}/files/").status_code == 403
    assert client_for("Viewer").get("/backups/99999/files/").status_code == 404


def test_wrong_method_is_405(client_for, backup):
    assert client_for("Admin").post(f"/backups/{backup.pk}/files/").status_code == 405


def test_viewers_may_not_download_a_file(client_for, backup):
    assert client_for("Viewer").get(f"/backups/{backup.pk}/files/download/?path=zeta.txt").status_code == 403


def test_another_teams_backup_and_its_files_are_404(make_user, backup):
    from django.test import Client

    shop = Team.objects.create(name="shop")
    TeamRule.objects.create(team=shop, kind="label", value="team=shop")
    mine = Volume.objects.create(name="mine", labels={"team": "shop"})
    own = backup_row(volume=mine, volume_name="mine", status=Backup.Status.SUCCEEDED, key="k")
    entry(own, "mine.txt")
    member = make_user(None, "shop-operator")
    TeamMembership.objects.create(team=shop, user=member, role="Operator")
    client = Client()
    client.force_login(member)

    assert client.get(f"/backups/{own.pk}/files/").status_code == 200
    assert client.get(f"/backups/{backup.pk}/files/").status_code == 404
    assert client.get(f"/backups/{backup.pk}/files/?q=zeta").status_code == 404
    assert client.get(f"/backups/{backup.pk}/files/download/?path=zeta.txt").status_code == 404


# --- the selection, carried to the restore forms ------------------------------------------------


def test_selected_paths_reach_the_restore_form_as_hidden_inputs(client_for, backup):
    response = client_for("Operator").get(f"/backups/{backup.pk}/restore/?paths=app/config.yml&paths=zeta.txt")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="selected-paths" data-count="2"' in html
    assert '<input type="hidden" name="paths" value="app/config.yml">' in html
    assert '<input type="hidden" name="paths" value="zeta.txt">' in html


def test_the_in_place_form_shows_the_selection_and_keeps_its_confirmation(client_for, backup):
    html = client_for("Admin").get(f"/backups/{backup.pk}/restore-in-place/?paths=app").content.decode()

    assert 'data-count="1"' in html and "the rest of the volume is left as it is" in html
    assert 'name="confirm_name"' in html and "the volume is emptied" not in html


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "a/./b"])
def test_bad_selected_paths_are_refused_on_the_form(client_for, backup, bad):
    response = client_for("Operator").get(f"/backups/{backup.pk}/restore/", {"paths": ["app", bad]})

    assert response.status_code == 400 and 'data-paths="refused"' in response.content.decode()
    assert 'name="paths"' not in response.content.decode()


def test_a_posted_selection_is_the_restores_paths(client_for, backup, settings):
    from restores.models import Restore

    response = client_for("Operator").post(f"/backups/{backup.pk}/restore/",
                                           {"name": "copy-1", "paths": ["app", "zeta.txt", "app"]})

    assert response.status_code == 302, response.content.decode()[:3000]
    assert Restore.objects.get(backup=backup).paths == ["app", "zeta.txt"]


def test_clean_path_normalises_and_refuses():
    assert files.clean_path("/a//b/") == "a/b" and files.clean_path(None) == ""
    for bad in ("..", "a/..", "a\nb"):
        with pytest.raises(files.BadPath):
            files.clean_path(bad)


def test_names_from_the_volume_are_escaped(client_for, backup):
    entry(backup, 'app/<b onclick="x">&\'.txt', "l", link='"><script>alert(1)</script>')

    html = client_for("Operator").get(f"/backups/{backup.pk}/files/?path=app").content.decode()

    assert "<script>alert" not in html and '<b onclick' not in html
    assert "&lt;b onclick=&quot;x&quot;&gt;&amp;&#x27;.txt" in html
    assert 'value="app/&lt;b onclick=&quot;x&quot;&gt;&amp;&#x27;.txt"' in html
