"""restic's words, parsed (pure: no process, no database): its errors, its version line,
its JSON lines (bounded, types checked), `ls` nodes, snapshots, tags. The untrusted-input
half of repositories.restic, which runs restic and re-exports all of this."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime

from project.errors import CargoholdError

# Flags and behaviours newer than the oldest restic Cargohold drives; used only where the
# helper's restic has them (restic_version()).
FEATURES = {
    "restore_json": (0, 16, 0),  # `restore --json` progress
    "retry_lock": (0, 16, 0),  # `--retry-lock 1m`
    "lock_exit_code": (0, 17, 0),  # exit code 11: the repository is locked
    "skip_if_unchanged": (0, 17, 0),  # `backup --skip-if-unchanged`
}
MAX_LINE = 1 << 20  # a longer line from restic is dropped, not parsed
MOUNT = "/data"
REPO_MOUNT = "/repo"


# --- errors -------------------------------------------------------------------------------


class ResticError(CargoholdError):
    """restic failed; the message says what to do."""


class WrongPassword(ResticError):
    pass


class RepositoryMissing(ResticError):
    """Not initialised, or the bucket / folder is not there."""


class RepositoryLocked(ResticError):
    pass


class DiskFull(ResticError):
    pass


class ResticTooOld(ResticError):
    pass


# --- versions -----------------------------------------------------------------------------

_VERSION = re.compile(r"^restic (\d{1,4})\.(\d{1,4})\.(\d{1,4})\S*\s")


def parse_version(text: str) -> tuple[int, int, int]:
    """`restic 0.14.0 compiled with go1.19.8 on linux/amd64` -> (0, 14, 0)."""
    match = _VERSION.match((text or "").strip() + " ")
    if not match:
        raise ResticError(f"The data helper's restic printed no version Cargohold understands: {_clip(text, 200)!r}.")
    return int(match[1]), int(match[2]), int(match[3])


def version_text(version: tuple[int, int, int]) -> str:
    return "restic " + ".".join(map(str, version))


def has_feature(version: tuple[int, int, int], name: str) -> bool:
    return version >= FEATURES[name]


# --- parsing (pure) -----------------------------------------------------------------------


def _clip(text, limit: int = 1500) -> str:
    text = str(text or "").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def json_line(line: bytes) -> dict | None:
    """One line of restic's --json output as a dict, or None (not JSON, too long, not an object)."""
    if len(line) > MAX_LINE:
        return None
    line = line.strip()
    if not line.startswith(b"{"):
        return None
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _int(value, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _num(value, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _str(value, limit: int = 4096) -> str:
    return value[:limit] if isinstance(value, str) else ""


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream into lines; a line beyond MAX_LINE is dropped whole."""
    pending = bytearray()
    skipping = False
    for chunk in chunks:
        start = 0
        while True:
            at = chunk.find(b"\n", start)
            if at < 0:
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > MAX_LINE:
                        pending.clear()
                        skipping = True
                break
            if not skipping:
                pending += chunk[start:at]
                yield bytes(pending)
            pending.clear()
            skipping = False
            start = at + 1
    if pending and not skipping:
        yield bytes(pending)


_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_time(value) -> float:
    """restic's RFC 3339 times (nanoseconds) as a POSIX timestamp; 0.0 if not one."""
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match:
        return 0.0
    y, mo, d, h, mi, s, frac, zone = match.groups()
    try:
        when = datetime.fromisoformat(f"{y}-{mo}-{d}T{h}:{mi}:{s}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        return 0.0
    return when.timestamp() + (int(frac.ljust(9, "0")) / 1e9 if frac else 0.0)


# Go's os.FileMode bits (restic's "mode") -> st_mode.
_GO_DIR, _GO_APPEND, _GO_EXCL, _GO_TEMP, _GO_SYMLINK = 1 << 31, 1 << 30, 1 << 29, 1 << 28, 1 << 27
_GO_DEVICE, _GO_PIPE, _GO_SOCKET, _GO_SETUID, _GO_SETGID = 1 << 26, 1 << 25, 1 << 24, 1 << 23, 1 << 22
_GO_CHARDEV, _GO_STICKY = 1 << 21, 1 << 20


def st_mode(go_mode: int) -> int:
    """Go's FileMode (what restic prints) as a POSIX st_mode."""
    mode = go_mode & 0o777
    if go_mode & _GO_SETUID:
        mode |= 0o4000
    if go_mode & _GO_SETGID:
        mode |= 0o2000
    if go_mode & _GO_STICKY:
        mode |= 0o1000
    if go_mode & _GO_DIR:
        kind = 0o040000
    elif go_mode & _GO_SYMLINK:
        kind = 0o120000
    elif go_mode & _GO_DEVICE:
        kind = 0o020000 if go_mode & _GO_CHARDEV else 0o060000
    elif go_mode & _GO_PIPE:
        kind = 0o010000
    elif go_mode & _GO_SOCKET:
        kind = 0o140000
    else:
        kind = 0o100000
    return kind | mode


_KINDS = {"file": "f", "dir": "d", "symlink": "l"}


def relative_path(path: str) -> str | None:
    """A snapshot path (/data/a/b) relative to the volume's root (a/b); "" for the root
    itself, None for a path outside /data or with '..' in it."""
    if path == MOUNT:
        return ""
    if not path.startswith(MOUNT + "/"):
        return None
    rel = path[len(MOUNT) + 1:]
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        return None
    return rel


def ls_entry(node: dict) -> dict | None:
    """One `restic ls --json` node as a file index entry, or None (the snapshot line,
    the volume's root, anything malformed or outside /data)."""
    if node.get("struct_type") != "node":
        return None
    rel = relative_path(_str(node.get("path"), 65536))
    if not rel:
        return None
    kind = _KINDS.get(node.get("type"), "o")
    go_mode = _int(node.get("mode"))
    return {
        "path": rel,
        "kind": kind,
        "size": _int(node.get("size")) if kind == "f" else 0,
        "mode": st_mode(go_mode) if go_mode else 0,
        "uid": _int(node.get("uid")),
        "gid": _int(node.get("gid")),
        "mtime": parse_time(node.get("mtime")),
        "link": _str(node.get("linktarget") or "", 65536) if kind == "l" else "",
    }


def snapshot_from_json(value) -> dict | None:
    """A snapshot of `restic snapshots --json`, its fields checked; None if malformed."""
    if not isinstance(value, dict):
        return None
    snap_id = _str(value.get("id"), 64)
    if not re.fullmatch(r"[0-9a-f]{64}", snap_id):
        return None
    tags = [t[:300] for t in value.get("tags") or [] if isinstance(t, str)][:50]
    paths = [p[:4096] for p in value.get("paths") or [] if isinstance(p, str)][:50]
    return {
        "id": snap_id,
        "short_id": snap_id[:8],
        "time": parse_time(value.get("time")),
        "time_text": _str(value.get("time"), 64),
        "hostname": _str(value.get("hostname"), 255),
        "paths": paths,
        "tags": tags,
        "tag_values": tag_values(tags),
    }


def tag_values(tags: list[str]) -> dict[str, str]:
    """`volume:web` -> {"volume": "web"}; the first of each name wins."""
    values: dict[str, str] = {}
    for tag in tags:
        name, sep, value = tag.partition(":")
        if sep and name not in values:
            values[name] = value
    return values


def backup_tags(*, volume_name: str, backup_uid: str, job_id: int | None) -> list[str]:
    tags = ["cargohold", f"volume:{volume_name}", f"backup:{backup_uid}"]
    if job_id:
        tags.append(f"job:{job_id}")
    return tags


_PROGRESS = re.compile(r"(\d+(?:\.\d+)?)%\s+(\d+) / (\d+)")
_LOCKED = re.compile(r"repository is already locked(?P<excl> exclusively)? by PID (?P<pid>\d+) on (?P<host>\S+) "
                     r"by (?P<user>\S+)[^\n]*(?:\nlock was created at (?P<at>[^\n(]+))?")


def classify(text: str, *, repo: str) -> ResticError:
    """restic's words (stderr) as the error a person can act on."""
    words = _clip(text)
    lower = text.lower()
    if "wrong password" in lower:
        return WrongPassword(f"restic says the password is wrong for {repo}: no key of the repository opens with "
                             "it. Enter the repository's password again on its page; nothing was changed.")
    if "repository is already locked" in lower:
        match = _LOCKED.search(text)
        who = (f"PID {match['pid']} on {match['host']} by {match['user']}"
               + (f" since {match['at'].strip()}" if match["at"] else "")) if match else "someone"
        return RepositoryLocked(
            f"The restic repository {repo} is locked by {who}. It is not a Cargohold operation that still runs: "
            "if nothing else uses the repository, run `restic unlock` on it; nothing was changed.")
    if "no space left on device" in lower:
        where = "the data helper's temporary space" if "/tmp" in text and REPO_MOUNT not in text else \
            "the repository's disk"
        return DiskFull(f"{where[0].upper()}{where[1:]} is full ({repo}): restic stopped and nothing was added. "
                        f"Free some space (prune old backups) and back up again. restic said: {words}")
    if "bucket does not exist" in lower or "nosuchbucket" in lower:
        return RepositoryMissing(f"The bucket of {repo} does not exist: create it (or fix the URL), then initialise "
                                 "the repository from its page.")
    if "unable to open config file" in lower or "is there a repository at the following location" in lower:
        return RepositoryMissing(f"There is no restic repository at {repo} (not initialised, or the wrong path): "
                                 "initialise it from the repository's page.")
    return ResticError(f"restic failed on {repo}: {words or 'it said nothing'}")
