"""Downloads of one file or folder of a real archive backup (made by the real backup
handler from a real volume): streamed from storage by the web process; the bytes are the
file's, a folder's tar holds its members; audited; roles checked."""

import io
import tarfile

import pytest
import zstandard

from accounts.models import AuditEvent
from backups import downloads
from backups.models import BackupEntry
from backups.services import backup_start
from backups.storage import backup_storage
from tests.backups.conftest import run_backup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine]

SCRIPT = ("mkdir -p /data/dir/sub /data/'odd \"name\"' && echo hello > /data/dir/hello.txt && "
          "head -c 300000 /dev/urandom > /data/dir/sub/random.bin && ln -s hello.txt /data/dir/link && "
          "ln /data/dir/hello.txt /data/dir/hard && echo odd > /data/'odd \"name\"'/'we\"ird;.txt' && "
          ": > /data/empty && chown -R 1234:4321 /data/dir/sub")


@pytest.fixture
def backup(no_enqueue, backup_root, volume_with_files):
    b = run_backup(backup_start(volume_name=volume_with_files(SCRIPT)))
    assert b.status == "succeeded", b.error
    assert BackupEntry.objects.filter(backup=b).exists()
    return b


def whole_archive(backup) -> dict[str, bytes]:
    """Every regular member of the stored archive, read with plain tarfile (independent of backups.partial)."""
    with backup_storage(backup).open_reader(backup.key) as raw:
        data = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.removeprefix("data/"): tf.extractfile(m).read() for m in tf.getmembers() if m.isreg()}


def get(client, backup, path):
    return client.get(f"/backups/{backup.pk}/files/download/", {"path": path})


def test_a_files_bytes_are_its_content_in_the_archive(client_for, backup):
    client = client_for("Operator")
    archive = whole_archive(backup)

    response = get(client, backup, "dir/sub/random.bin")
    body = b"".join(response.streaming_content)

    assert response.status_code == 200 and response.streaming
    assert body == archive["dir/sub/random.bin"] and len(body) == 300000
    assert response["Content-Length"] == "300000"
    assert response["Content-Disposition"] == 'attachment; filename="random.bin"'
    assert b"".join(get(client, backup, "dir/hello.txt").streaming_content) == b"hello\n"
    assert b"".join(get(client, backup, "empty").streaming_content) == b""
    assert b"".join(get(client, backup, "dir/hard").streaming_content) == b"hello\n"  # a hard link: its target's
    event = AuditEvent.objects.filter(action="backup_file_download", object_name=str(backup.pk)).order_by("pk")[0]
    assert event.params["path"] == "dir/sub/random.bin" and event.result == "ok"


def test_a_folder_is_a_tar_of_its_members_named_from_the_folder(client_for, backup):
    response = get(client_for("Operator"), backup, "dir")

    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as tf:
        members = {m.name.rstrip("/"): m for m in tf.getmembers()}
        random = tf.extractfile(members["dir/sub/random.bin"]).read()
    assert response["Content-Disposition"] == 'attachment; filename="dir.tar"'
    assert response["Content-Type"] == "application/x-tar"
    assert set(members) == {"dir", "dir/hello.txt", "dir/sub", "dir/sub/random.bin", "dir/link", "dir/hard"}
    assert members["dir/link"].issym() and members["dir/link"].linkname == "hello.txt"
    assert members["dir/sub/random.bin"].uid == 1234 and random == whole_archive(backup)["dir/sub/random.bin"]
    sub = get(client_for("Operator"), backup, "dir/sub")
    with tarfile.open(fileobj=io.BytesIO(b"".join(sub.streaming_content))) as tf:
        assert sorted(n.rstrip("/") for n in tf.getnames()) == ["sub", "sub/random.bin"]


def test_links_unknown_and_bad_paths_are_404_and_roles_are_checked(client_for, backup):
    client = client_for("Operator")

    assert get(client, backup, "dir/link").status_code == 404
    assert get(client, backup, "nope.txt").status_code == 404
    assert get(client, backup, "../etc/passwd").status_code == 404
    assert get(client_for("Viewer"), backup, "dir/hello.txt").status_code == 403
    assert get(client_for("Admin"), backup, "dir/hello.txt").status_code == 200
    assert client_for("Operator").post(f"/backups/{backup.pk}/files/download/", {"path": "dir"}).status_code == 405


def test_an_odd_name_is_sent_safely_and_a_missing_archive_is_404(client_for, backup):
    response = get(client_for("Operator"), backup, 'odd "name"/we"ird;.txt')
    assert b"".join(response.streaming_content) == b"odd\n"
    assert response["Content-Disposition"] == 'attachment; filename="we_ird;.txt"'
    backup_storage(backup).delete(backup.key)

    response = get(client_for("Operator"), backup, "dir/hello.txt")

    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="backup_file_download").latest("pk").result == "error"


def test_safe_file_name():
    assert downloads.safe_file_name('a\nb\x00c/d\\e"f') == "a_b_c_d_e_f"
    assert downloads.safe_file_name("été.txt") == "été.txt"
    assert downloads.safe_file_name("..") == "download" and downloads.safe_file_name("x" * 300) == "x" * 200
