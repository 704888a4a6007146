"""The restic adapter's pure parts: what restic prints is untrusted and parsed with care."""

import json

import pytest

from repositories import restic


def test_the_version_line_is_parsed_and_features_follow_it():
    version = restic.parse_version("restic 0.14.0 compiled with go1.19.8 on linux/amd64\n")
    assert version == (0, 14, 0)
    assert not restic.has_feature(version, "restore_json")
    assert restic.has_feature((0, 17, 1), "restore_json") and restic.has_feature((0, 17, 1), "lock_exit_code")
    with pytest.raises(restic.ResticError):
        restic.parse_version("rustic 1.0")


def test_go_file_modes_become_st_modes():
    assert restic.st_mode(2147484141) == 0o040755  # a folder, as restic 0.14 prints it
    assert restic.st_mode(134218239) == 0o120777  # a symlink
    assert restic.st_mode(420) == 0o100644
    assert restic.st_mode((1 << 23) | 0o755) == 0o104755  # setuid
    assert restic.st_mode((1 << 26) | (1 << 21) | 0o600) == 0o020600  # a character device
    assert restic.st_mode((1 << 25) | 0o644) == 0o010644  # a FIFO


def test_ls_nodes_become_index_entries_relative_to_the_volume_root():
    node = {"name": "a.txt", "type": "file", "path": "/data/dir/a.txt", "uid": 1234, "gid": 4321, "size": 3,
            "mode": 420, "mtime": "2026-12-01T14:16:37.135469495Z", "struct_type": "node"}
    entry = restic.ls_entry(node)
    assert entry == {"path": "dir/a.txt", "kind": "f", "size": 3, "mode": 0o100644, "uid": 1234, "gid": 4321,
                     "mtime": pytest.approx(1796134597.135469495), "link": ""}
    link = restic.ls_entry({**node, "type": "symlink", "path": "/data/l", "linktarget": "a.txt", "mode": 134218239})
    assert link["kind"] == "l" and link["link"] == "a.txt" and link["size"] == 0
    assert restic.ls_entry({**node, "type": "fifo"})["kind"] == "o"
    # The root itself, the snapshot line, and anything outside /data or climbing out are left out.
    assert restic.ls_entry({**node, "path": "/data"}) is None
    assert restic.ls_entry({"struct_type": "snapshot", "paths": ["/data"]}) is None
    assert restic.ls_entry({**node, "path": "/etc/passwd"}) is None
    assert restic.ls_entry({**node, "path": "/data/../etc"}) is None
    # Wrong types are not trusted: no negative or textual numbers.
    odd = restic.ls_entry({**node, "uid": -1, "gid": "0", "size": True, "mtime": 5})
    assert (odd["uid"], odd["gid"], odd["size"], odd["mtime"]) == (0, 0, 0, 0.0)


def test_lines_are_bounded_and_only_json_objects_count():
    huge = b"x" * (restic.MAX_LINE + 10)
    chunks = [b'{"a": 1}\n{"b"', b': 2}\n', huge[:500], huge[500:] + b"\n", b"[1, 2]\nplain text\n{\"c\": 3}"]
    found = [restic.json_line(line) for line in restic.lines(chunks)]
    assert [f for f in found if f] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert restic.json_line(b'{"deep": ' + b"[" * 100000 + b"]" * 100000 + b"}") is None


def test_snapshots_are_checked_field_by_field():
    good = {"id": "ab" * 32, "time": "2026-12-01T14:16:40.014631589Z", "hostname": "vm", "paths": ["/data"],
            "tags": ["cargohold", "volume:web", "backup:123", 5]}
    snap = restic.snapshot_from_json(good)
    assert snap["tag_values"] == {"volume": "web", "backup": "123"} and snap["tags"][-1] == "backup:123"
    assert restic.snapshot_from_json({**good, "id": "../../etc"}) is None
    assert restic.snapshot_from_json(["not", "a", "dict"]) is None


@pytest.mark.parametrize("words, kind, says", [
    ("Fatal: wrong password or no key found\n", restic.WrongPassword, "the password is wrong for REPO"),
    (("Fatal: unable to open config file: stat /repo/config: no such file or directory\nIs there a repository at "
      "the following location?\n/repo"), restic.RepositoryMissing, "initialise it"),
    (("unable to create lock in backend: repository is already locked exclusively by PID 7 on box by root "
      "(UID 0, GID 0)\nlock was created at 2026-12-01 14:33:22 (1m2s ago)\nstorage ID 0a1b2c3d"),
     restic.RepositoryLocked, "locked by PID 7 on box by root since 2026-12-01 14:33:22"),
    ("Fatal: unable to save snapshot: write /repo/data/ab/abcd: no space left on device",
     restic.DiskFull, "The repository's disk is full (REPO): restic stopped and nothing was added"),
    ("Fatal: The specified bucket does not exist.", restic.RepositoryMissing, "bucket of REPO does not exist"),
    ("something else entirely", restic.ResticError, "restic failed on REPO: something else entirely"),
])
def test_restics_words_become_errors_a_person_can_act_on(words, kind, says):
    error = restic.classify(words, repo="REPO")
    assert type(error) is kind and says in str(error)


def test_paths_are_named_inside_the_snapshot_and_patterns_escaped():
    assert restic.snapshot_path("dir/a.txt") == "/data/dir/a.txt"
    assert restic.snapshot_path("data/dir") == "/data/data/dir" and restic.snapshot_path("") == "/data"  # a folder named data
    assert restic._include_pattern("odd [name]*.txt") == r"/data/odd \[name]\*.txt"
    with pytest.raises(restic.Refused):
        restic.snapshot_path("../etc")


def test_secrets_go_on_stdin_one_per_line_and_never_with_a_line_break(db):
    from repositories.models import Repository

    repo = Repository(name="x", format="restic", url="s3:http://127.0.0.1:9000/bucket", region="us-east-1")
    repo.set_secrets(access_key_id="AKIA", secret_access_key="SECRET", password="pw")
    assert restic._stdin_lines(repo) == b"pw\nAKIA\nSECRET\nus-east-1\n"
    assert "pw" not in json.dumps(restic.SECRET_SCRIPT)
    repo.set_secrets(password="two\nlines")
    with pytest.raises(restic.ResticError):
        restic._stdin_lines(repo)
