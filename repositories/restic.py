"""restic, driven as a program (worker side): the only module that knows restic's flags,
its JSON and its words.

restic runs next to the data, in the data helper container (volumes.datahelper: the
image has /usr/bin/restic), like GNU tar does for archives: the volume at /data (read-only
for a backup), a local repository's folder at /repo, no network unless the repository is
on S3. Its output is untrusted: every line is bounded (MAX_LINE), parsed as JSON with its
types checked, and scrubbed (project.redact, and the repository's own secrets) before any
of it is stored or shown.

Secrets never reach argv or the container's Env (`docker inspect` shows both): they go
on the helper's stdin, one per line, and its `sh` reads them into its own environment
before it execs restic (SECRET_SCRIPT).

Locks: every operation that takes restic's exclusive lock (forget, prune, check, unlock)
holds Cargohold's lock on the repository (jobs.locks.repository_lock) too. When restic
says the repository is locked, the lock is proven stale if Cargohold's repository lock is
free, no job of Cargohold runs restic on it (database) and no helper of it runs on this
engine, and every restic lock was written by a Cargohold helper (its host name): then it
is removed (`restic unlock --remove-all`) and the operation runs once more. A lock held
by anyone else is reported with who and since when, and left alone.

Its words (errors, version, JSON lines, `ls` nodes, snapshots, tags) are parsed in
repositories.restic_json (pure), re-exported here. Over 450 lines still: running restic,
its stale locks and the operations share `_run`; the stale-lock handling is the next piece
to move out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings

from project.errors import Refused
from project.redact import scrubbed_text
from repositories.restic_json import (  # noqa: F401  (callers use restic.<name>)
    ResticError,
    WrongPassword,
    RepositoryMissing,
    RepositoryLocked,
    DiskFull,
    ResticTooOld,
    FEATURES,
    MAX_LINE,
    MOUNT,
    parse_version,
    version_text,
    has_feature,
    _clip,
    json_line,
    _int,
    _num,
    _str,
    lines,
    parse_time,
    st_mode,
    relative_path,
    ls_entry,
    snapshot_from_json,
    tag_values,
    backup_tags,
    classify,
    REPO_MOUNT,
    _PROGRESS,
)
from volumes import datahelper, engine

logger = logging.getLogger(__name__)

RESTIC = "/usr/bin/restic"
MIN_VERSION = (0, 14, 0)
HOST_PREFIX = "cargohold-"  # the helper's host name, which restic writes into its locks
TMPFS_SIZE = "256m"  # restic assembles pack files (16 MiB each, a few at a time) in /tmp
PIDS_LIMIT = 512

# The secrets, one per line on stdin, into the environment of restic only.
SECRET_SCRIPT = (
    "IFS= read -r RESTIC_PASSWORD; IFS= read -r AWS_ACCESS_KEY_ID; IFS= read -r AWS_SECRET_ACCESS_KEY; "
    "IFS= read -r AWS_DEFAULT_REGION; export RESTIC_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; "
    '[ -n "$AWS_DEFAULT_REGION" ] && export AWS_DEFAULT_REGION; '
    "RESTIC_PROGRESS_FPS=1; export RESTIC_PROGRESS_FPS; "
    f'exec {RESTIC} "$@"'
)


_versions: dict[str, tuple[int, int, int]] = {}  # per image, asked once per process


def restic_version(image: str | None = None) -> tuple[int, int, int]:
    """The helper image's restic version (asked once per image and process); raises
    ResticTooOld below MIN_VERSION."""
    image = image or _image()
    if image not in _versions:
        with datahelper.data_helper(None, image=image, command=[RESTIC, "version"], read_only=True, caps=(),
                                    purpose="restic") as helper:
            out = b"".join(helper.output())
            code = helper.finish(timeout=60)
        if code != 0:
            raise ResticError(f"`restic version` failed in the data helper (exit {code}): {_clip(helper.messages())}")
        version = parse_version(out.decode("utf-8", "replace"))
        if version < MIN_VERSION:
            raise ResticTooOld(f"The data helper has {version_text(version)}; Cargohold needs restic "
                               f"{'.'.join(map(str, MIN_VERSION))} or newer: rebuild it (make setup).")
        _versions[image] = version
    return _versions[image]


def _image() -> str:
    image = datahelper.data_helper_image()
    if not image:
        raise ResticError("restic repositories need the data helper image (CARGOHOLD_DATA_HELPER_IMAGE); "
                          "it is not on this engine: run `make setup`.")
    return image


# --- running restic in the helper ---------------------------------------------------------


def _secret_values(repository) -> list[str]:
    secrets = repository.secrets()
    return [v for v in (secrets.get("password"), secrets.get("access_key_id"), secrets.get("secret_access_key")) if v]


def _scrub(text: str, repository) -> str:
    for value in _secret_values(repository):
        if len(value) >= 3:
            text = text.replace(value, "***")
    return scrubbed_text(text)


def _stdin_lines(repository) -> bytes:
    secrets = repository.secrets()
    if not secrets.get("password"):
        raise ResticError(f"The restic repository {repository.name} has no password: set one on its page.")
    values = [secrets["password"], secrets.get("access_key_id", ""), secrets.get("secret_access_key", ""),
              repository.region or ""]
    if any("\n" in v or "\r" in v or "\x00" in v for v in values):
        raise ResticError(f"A secret of {repository.name} has a line break in it; enter it again.")
    return "".join(v + "\n" for v in values).encode()


def repository_url(repository) -> str:
    """What restic's -r gets inside the helper: /repo for a local folder (bind-mounted),
    the s3: URL for a bucket."""
    location = repository.location
    if location.is_s3:
        return location.url()
    return REPO_MOUNT


def repository_label(repository) -> str:
    return f"{repository.name} ({repository.location.url()})"


REPOSITORY_LABEL = "cargohold.repository"


def repository_label_value(repository) -> str:
    """Names the repository itself (its location), not a row: two Cargohold databases on
    one engine may both have a repository #1, but not two restic repositories in one place."""
    return hashlib.sha256(repository.location.url().encode()).hexdigest()[:16]


_host_cache: dict[str, str] = {}


def engine_host() -> str:
    """The engine's host name: snapshots' --host, stable for every backup of this engine."""
    if "host" not in _host_cache:
        try:
            name = engine.info().host_name
        except engine.EngineError:
            name = ""
        _host_cache["host"] = re.sub(r"[^A-Za-z0-9.-]", "-", name)[:63].strip("-.") or "engine"
    return _host_cache["host"]


def helper_hostname() -> str:
    """The restic helper's host name: this installation's id and the engine's host. restic
    writes it into its locks; only locks with exactly this name can be proven ours (another
    Cargohold sharing the repository writes its own, and its locks are never removed)."""
    from django.conf import settings

    return (f"{HOST_PREFIX}{settings.INSTALL_ID}-" + engine_host())[:63].rstrip("-.")


@dataclass
class Outcome:
    code: int
    messages: str  # stderr, scrubbed
    errors: list[str] = field(default_factory=list)  # --json error messages, scrubbed
    summary: dict | None = None


def _run(repository, args: list[str], *, volume_name: str | None = None, read_only: bool = True,
         caps: Iterable[str] = (), job_id: int | None = None, purpose: str = "restic",
         on_json: Callable[[dict], None] | None = None, on_text: Callable[[str], None] | None = None,
         sink=None, check: bool = True, timeout: int = 24 * 3600, retry_stale_lock: bool = True) -> Outcome:
    """Run `restic -r REPO <args>` in the data helper, secrets on its stdin.

    stdout goes to `sink` (raw bytes: dump) or is split into bounded lines: JSON objects
    to `on_json`, other lines (scrubbed) to `on_text`. With `check`, a non-zero exit
    raises the classified error; a lock proven stale is removed and the run repeated once.
    """
    image = _image()
    location = repository.location
    local = not location.is_s3
    command = ["/bin/sh", "-c", SECRET_SCRIPT, "restic", "-r", repository_url(repository), "--no-cache", *args]
    caps = tuple(caps) + (("DAC_OVERRIDE",) if local and "DAC_OVERRIDE" not in caps else ())
    summary = None
    errors: list[str] = []
    with datahelper.data_helper(
        volume_name, image=image, command=command, read_only=read_only, caps=caps, stdin=True, purpose=purpose,
        job_id=job_id, repo_path=location.path if local else None, network="host" if location.is_s3 else None,
        hostname=helper_hostname(), tmpfs_size=TMPFS_SIZE, pids_limit=PIDS_LIMIT,
        labels={REPOSITORY_LABEL: repository_label_value(repository)},
    ) as helper:
        helper.write(_stdin_lines(repository))
        helper.close_input()
        with closing(helper.output()) as chunks:
            if sink is not None:
                for chunk in chunks:
                    sink.write(chunk)
            else:
                for line in lines(chunks):
                    value = json_line(line)
                    if value is not None:
                        kind = value.get("message_type")
                        if kind == "summary":
                            summary = value
                        elif kind == "error":
                            err = value.get("error")
                            text = _str(err.get("message") if isinstance(err, dict) else err, 1000)
                            item = _str(value.get("item"), 1000)
                            if len(errors) < 100:
                                errors.append(_scrub(f"{item}: {text}" if item else text, repository))
                        if on_json is not None:
                            on_json(value)
                    elif on_text is not None:
                        on_text(_scrub(line.decode("utf-8", "replace")[:2000], repository))
        code = helper.finish(timeout=timeout)
        messages = _scrub(helper.messages(), repository)
    outcome = Outcome(code=code, messages=messages, errors=errors, summary=summary)
    if check and code != 0:
        error = classify(messages, repo=repository_label(repository))
        if isinstance(error, RepositoryLocked) and retry_stale_lock and _remove_stale_locks(repository, messages,
                                                                                             job_id=job_id):
            return _run(repository, args, volume_name=volume_name, read_only=read_only, caps=caps, job_id=job_id,
                        purpose=purpose, on_json=on_json, on_text=on_text, sink=sink, check=check, timeout=timeout,
                        retry_stale_lock=False)
        raise error
    return outcome


# --- stale locks ----------------------------------------------------------------------------


def _lock_hosts(repository) -> list[str] | None:
    """The host names in every restic lock of the repository (None if unreadable)."""
    ids: list[str] = []
    try:
        _run(repository, ["--no-lock", "list", "locks"], on_text=lambda t: ids.append(t.strip()),
             retry_stale_lock=False)
    except ResticError:
        return None
    hosts = []
    for lock_id in ids[:50]:
        if not re.fullmatch(r"[0-9a-f]{64}", lock_id):
            continue
        out = _Bounded(1 << 16)
        try:
            _run(repository, ["--no-lock", "cat", "lock", lock_id], sink=out, retry_stale_lock=False)
        except ResticError:
            continue  # removed meanwhile
        value = json_line(bytes(out.data).replace(b"\n", b" "))  # printed indented, over several lines
        hosts.append(_str(value.get("hostname"), 255) if value else "")
    return hosts


class _Bounded:
    """A sink that keeps at most `limit` bytes (restic's output is untrusted)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self.limit:
            raise ResticError(f"restic printed more than {self.limit} bytes where a little was expected.")
        self.data += chunk


def _cargohold_uses(repository, *, job_id: int | None) -> str:
    """What else of Cargohold runs restic on the repository now ("" for nothing): a
    running backup or restore job other than `job_id`'s, or a helper on this engine."""
    from backups.models import Backup
    from jobs.models import Job
    from restores.models import Restore

    running = Backup.objects.filter(repository=repository, job__status=Job.Status.RUNNING).exclude(
        job_id=job_id).first()
    if running is None:
        restore = Restore.objects.filter(backup__repository=repository, job__status=Job.Status.RUNNING).exclude(
            job_id=job_id).first()
        if restore is not None:
            return f"restore #{restore.pk}"
    else:
        return f"backup #{running.pk}"
    try:
        helpers = engine.api().containers(
            filters={"label": [f"{REPOSITORY_LABEL}={repository_label_value(repository)}"]})
    except Exception:  # noqa: BLE001 (docker's own errors: the engine not answering is no proof)
        return "an unknown helper (the engine did not answer)"
    return f"helper container {helpers[0]['Id'][:12]}" if helpers else ""


def _remove_stale_locks(repository, messages: str, *, job_id: int | None = None) -> bool:
    """Remove restic's locks if they are provably left by a Cargohold helper that is gone;
    True if removed (the caller runs again)."""
    from jobs.locks import LockHeld, lock_acquire, lock_release, repository_lock

    resource, owner = repository_lock(repository.pk), f"stale-lock check of {repository.name}"
    held_here = repository.pk in _held.pks
    try:
        if not held_here:
            lock_acquire(resource=resource, owner=owner, ttl=timedelta(minutes=5))
    except LockHeld:
        logger.info("restic lock of %s not removed: Cargohold's lock on it is held", repository.name)
        return False  # a Cargohold operation holds the repository: its restic lock is live
    try:
        if user := _cargohold_uses(repository, job_id=job_id):
            logger.info("restic lock of %s not removed: %s uses the repository", repository.name, user)
            return False
        hosts = _lock_hosts(repository)
        if not hosts or not all(h == helper_hostname() for h in hosts):
            logger.info("restic lock of %s not removed: held from %s", repository.name, hosts)
            return False
        _run(repository, ["unlock", "--remove-all"], retry_stale_lock=False)
        logger.warning("removed %d stale restic lock(s) of repository %s left by Cargohold helpers that are gone "
                       "(%s)", len(hosts), repository.name, _clip(messages, 300))
        return True
    finally:
        if not held_here:
            lock_release(resource=resource, owner=owner)


class _Held(threading.local):
    def __init__(self):
        self.pks: set[int] = set()


_held = _Held()  # the repositories whose Cargohold lock this thread holds (_exclusive)


@contextmanager
def _holding(repository):
    _held.pks.add(repository.pk)
    try:
        yield
    finally:
        _held.pks.discard(repository.pk)


@contextmanager
def _exclusive(ctx, repository):
    """Cargohold's lock on the repository for restic's exclusive operations: the job's
    (refreshed by its heartbeat), or, without a job (a deletion, the CLI), a plain one."""
    from jobs.locks import LockHeld, lock_acquire, lock_release, repository_lock

    resource = repository_lock(repository.pk)
    wait = float(settings.BACKUP_LOCK_WAIT_SECONDS)
    if ctx is not None and hasattr(ctx, "lock"):
        with ctx.lock(resource, wait_seconds=wait), _holding(repository):
            yield
        return
    from jobs.runner import worker_id

    owner, deadline = f"restic on {worker_id()}", time.monotonic() + wait
    while True:
        try:
            lock_acquire(resource=resource, owner=owner, ttl=timedelta(hours=6))
            break
        except LockHeld as exc:
            if time.monotonic() >= deadline:
                raise Refused(f"{resource} is busy: {exc.lock.owner} holds it.") from None
            time.sleep(1)
    try:
        with _holding(repository):
            yield
    finally:
        lock_release(resource=resource, owner=owner)


def _job_id(ctx) -> int | None:
    return getattr(getattr(ctx, "job", None), "pk", None)


# --- the operations -----------------------------------------------------------------------


def _remember(repository, text: str) -> None:
    from django.utils import timezone

    from project.db import save_fields

    if repository.pk:
        save_fields(repository, status_text=text[:2000], checked_at=timezone.now())


def restic_init(repository) -> str:
    """Create the restic repository (its folder or prefix must not hold one yet)."""
    version = restic_version()
    _run(repository, ["init"], purpose="restic-init")
    _remember(repository, f"{version_text(version)}; initialised: ok")
    return f"Initialised the restic repository {repository_label(repository)}."


def restic_check_access(repository) -> str:
    """The helper's restic version and "ok" when the repository opens with its password
    (remembered in the repository's status_text); raises the classified error otherwise."""
    version = restic_version()
    try:
        _run(repository, ["--no-lock", "cat", "config"], purpose="restic-check")
    except ResticError as exc:
        _remember(repository, f"{version_text(version)}; {exc}")
        raise
    text = f"{version_text(version)}; repository opens with its password: ok"
    _remember(repository, text)
    return text


def restic_backup(ctx, backup, *, _retry: bool = True) -> dict:
    """Back up `backup`'s volume (mounted read-only at /data) into its repository.

    Progress: restic's --json status lines (bytes done of bytes found) on the job; cancel
    kills the helper (restic's lock it leaves is removed by the next run as stale).
    Returns {snapshot_id, short_id, files, dirs, bytes_processed, data_added, warnings}.
    """
    repository = backup.repository
    version = restic_version()
    tags = backup_tags(volume_name=backup.volume_name, backup_uid=backup.uid.hex, job_id=_job_id(ctx))
    args = ["backup", "--json", "--host", engine_host()]
    for tag in tags:
        args += ["--tag", tag]
    args.append(MOUNT)
    ctx.log(f"restic: {version_text(version)}, repository {repository_label(repository)}, "
            f"host {engine_host()}, tags {', '.join(tags)}")

    def on_json(value: dict) -> None:
        if value.get("message_type") == "status":
            total = _int(value.get("total_bytes"))
            done = _int(value.get("bytes_done"))
            files = _int(value.get("files_done"))
            ctx.set_progress(done, total or None, f"restic: {files} files read")
        ctx.check_cancelled()

    outcome = _run(repository, args, volume_name=backup.volume_name, read_only=True, caps=datahelper.READ_CAPS,
                   job_id=_job_id(ctx), purpose="backup", on_json=on_json, check=False)
    # restic's 3: a snapshot was made but some files could not be read (they are named).
    if outcome.code not in (0, 3) or outcome.summary is None:
        if outcome.code == 0:
            raise ResticError(f"restic ended without a summary for {repository_label(repository)}: "
                              f"{_clip(outcome.messages)}")
        error = classify(outcome.messages, repo=repository_label(repository))
        if _retry and isinstance(error, RepositoryLocked) and _remove_stale_locks(
                repository, outcome.messages, job_id=_job_id(ctx)):
            ctx.log("restic: removed a stale lock left by a Cargohold helper that is gone; backing up again")
            return restic_backup(ctx, backup, _retry=False)
        raise error
    summary = outcome.summary
    # restic 0.14 names the snapshot by its short id here; restic_snapshot_ls gives the full one.
    snapshot_id = _str(summary.get("snapshot_id"), 64)
    if not re.fullmatch(r"[0-9a-f]{8,64}", snapshot_id or ""):
        raise ResticError(f"restic reported no snapshot id for {repository_label(repository)}.")
    # What the repository grew by: restic 0.17+ says it after compression, older ones before.
    added = summary.get("data_added_packed") if isinstance(summary.get("data_added_packed"), int) else \
        summary.get("data_added")
    result = {
        "snapshot_id": snapshot_id,
        "short_id": snapshot_id[:8],
        "files": _int(summary.get("total_files_processed")),
        "files_new": _int(summary.get("files_new")),
        "files_changed": _int(summary.get("files_changed")),
        "files_unmodified": _int(summary.get("files_unmodified")),
        "dirs": _int(summary.get("dirs_new")) + _int(summary.get("dirs_changed")) + _int(summary.get("dirs_unmodified")),
        "bytes_processed": _int(summary.get("total_bytes_processed")),
        "data_added": _int(added),
        "duration": _num(summary.get("total_duration")),
        "warnings": outcome.errors[:20],
        "version": version_text(version),
    }
    return result


def restic_snapshots(repository, *, tag: str = "cargohold") -> list[dict]:
    """The repository's snapshots carrying `tag` (Cargohold's by default), oldest first,
    each checked (snapshot_from_json): for the catalogue's rescan."""
    out = _Bounded(256 << 20)
    _run(repository, ["--no-lock", "snapshots", "--json", "--tag", tag], sink=out, purpose="restic-snapshots")
    try:
        values = json.loads(bytes(out.data) or b"[]")
    except (ValueError, RecursionError):
        raise ResticError(f"`restic snapshots` printed no JSON list for {repository_label(repository)}.") from None
    if not isinstance(values, list):
        return []
    snaps = [s for s in (snapshot_from_json(v) for v in values) if s is not None]
    return sorted(snaps, key=lambda s: s["time"])


def _snapshot_arg(snapshot_id: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", snapshot_id or ""):
        raise Refused(f"{snapshot_id!r} is not a restic snapshot id.")
    return snapshot_id


def restic_ls(repository, snapshot_id: str) -> Iterator[dict]:
    """Every file, folder and link of a snapshot (the file index): dicts of path
    (relative to the volume's root), kind (f/d/l/o), size, mode (st_mode), uid, gid,
    mtime (float), link. Collected first (the helper is gone when iteration starts)."""
    return iter(restic_snapshot_ls(repository, snapshot_id)[1])


def restic_snapshot_ls(repository, snapshot_id: str, *, entries: bool = True) -> tuple[dict | None, list[dict]]:
    """(the snapshot, checked, with its full id; its entries as restic_ls gives them) in
    one `restic ls` (`entries=False`: the snapshot only, its first line)."""
    found: list[dict] = []
    snapshot: list[dict] = []

    def on_json(value: dict) -> None:
        if value.get("struct_type") == "snapshot" and not snapshot:
            checked = snapshot_from_json(value)
            if checked is not None:
                snapshot.append(checked)
        elif entries:
            entry = ls_entry(value)
            if entry is not None:
                found.append(entry)

    args = ["--no-lock", "ls", "--json", _snapshot_arg(snapshot_id)]
    if not entries:
        args.append("/data/.cargohold-nothing-here")  # restic lists only what matches: nothing
    _run(repository, args, on_json=on_json, purpose="restic-ls")
    links = {f"{MOUNT}/{e['path']}": e for e in found if e["kind"] == "l" and not e["link"]}
    if links:
        _link_targets(repository, snapshot_id, links)
    return (snapshot[0] if snapshot else None), found


def _link_targets(repository, snapshot_id: str, links: dict[str, dict]) -> None:
    """Symlink targets from `restic ls -l` (its --json has none before restic 0.15): a
    line ends "<path> -> <target>" and the paths are known, so a target with " -> " in
    it is read right; a name with a line break in it keeps an empty target."""

    def on_text(text: str) -> None:
        at = text.find(f" {MOUNT}/")
        while at >= 0:
            head, sep, target = text[at + 1:].partition(" -> ")
            if sep and head in links:
                links[head]["link"] = target[:65536]
                return
            at = text.find(f" {MOUNT}/", at + 1)

    _run(repository, ["--no-lock", "ls", "-l", _snapshot_arg(snapshot_id)], on_text=on_text, purpose="restic-ls")


def snapshot_path(path: str) -> str:
    """A path relative to the volume's root as restic names it in the snapshot."""
    # Relative to the volume's root, as the file index and Restore.paths give them: a
    # top-level folder may itself be called "data" (snapshot: /data/data/...).
    path = (path or "").strip("/")
    if any(p in (".", "..") for p in path.split("/")) or "\x00" in path:
        raise Refused(f"{path!r} is not a path inside the volume.")
    return f"{MOUNT}/{path}" if path else MOUNT


def restic_dump(repository, snapshot_id: str, path: str, writer) -> None:
    """A file's bytes, or a folder as a tar stream, from a snapshot into `writer`."""
    _run(repository, ["--no-lock", "dump", _snapshot_arg(snapshot_id), snapshot_path(path)], sink=writer,
         purpose="restic-dump")


def _include_pattern(path: str) -> str:
    # restic's --include is a pattern: escape what it would read as one.
    return re.sub(r"([*?\[\\])", r"\\\1", snapshot_path(path))


def restic_restore(ctx, repository, snapshot_id: str, volume_name: str, include: Iterable[str] = ()) -> dict:
    """Restore a snapshot (or the `include`d paths of it) into the volume at /data, with
    numeric owners, modes, times and extended attributes (restic restores them). The
    caller empties the volume first when the whole snapshot goes back."""
    version = restic_version()
    args = ["restore", _snapshot_arg(snapshot_id), "--target", "/"]
    for path in include:
        args += ["--include", _include_pattern(path)]
    ctx.log(f"restic: {version_text(version)}, restoring snapshot {snapshot_id[:8]} of "
            f"{repository_label(repository)} into {volume_name}")
    texts: list[str] = []

    def on_text(text: str) -> None:
        texts.append(text)
        del texts[:-20]
        ctx.say(f"restic: {text[:200]}" if text.strip() else "restic: restoring")
        ctx.check_cancelled()

    _run(repository, args, volume_name=volume_name, read_only=False,
         caps=datahelper.WRITE_CAPS + datahelper.DEVICE_CAPS, job_id=_job_id(ctx), purpose="restore",
         on_text=on_text)
    return {"lines": texts}


def restic_forget(repository, snapshot_ids: Iterable[str], ctx=None) -> None:
    """Forget snapshots by id (their data goes at the next prune)."""
    ids = [_snapshot_arg(s) for s in snapshot_ids]
    if not ids:
        return
    with _exclusive(ctx, repository):
        _run(repository, ["forget", *ids], job_id=_job_id(ctx), purpose="restic-forget")


def restic_prune(ctx, repository) -> str:
    """Remove the data no snapshot uses any more; its phases and counts on the job."""
    phases: list[str] = []

    def on_text(text: str) -> None:
        text = text.strip()
        match = _PROGRESS.search(text)
        if match:
            ctx.set_progress(int(match[2]), int(match[3]))
        elif text and not text.startswith("["):
            phases.append(text)
            del phases[:-40]
            ctx.say(f"restic prune: {text[:200]}")
        ctx.check_cancelled()

    with _exclusive(ctx, repository):
        _run(repository, ["prune"], job_id=_job_id(ctx), purpose="restic-prune", on_text=on_text)
    totals = [p for p in phases if p.startswith(("total prune", "remaining", "unused size"))]
    return "; ".join(totals) or "pruned"


_SUBSET = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3})?%|\d{1,6}/\d{1,6}|\d{1,9}[KMGT]?)$")


def restic_verify(ctx, repository, read_subset: str) -> str:
    """`restic check --read-data-subset`: the repository's structure, and that subset of
    its data read back and checked. Returns restic's last words; raises on a problem."""
    subset = (read_subset or settings.RESTIC_VERIFY_READ_SUBSET).strip()
    if not _SUBSET.match(subset):
        raise Refused(f"{subset!r} is not a read subset restic takes (e.g. 5%, 1/10, 500M).")
    texts: list[str] = []

    def on_text(text: str) -> None:
        text = text.strip()
        match = _PROGRESS.search(text)
        if match:
            ctx.set_progress(int(match[2]), int(match[3]))
        elif text:
            texts.append(text)
            del texts[:-40]
            ctx.say(f"restic check: {text[:200]}")
        ctx.check_cancelled()

    with _exclusive(ctx, repository):
        try:
            _run(repository, ["check", "--read-data-subset", subset], job_id=_job_id(ctx), purpose="restic-check",
                 on_text=on_text)
        except ResticError as exc:
            if type(exc) is ResticError:
                found = "; ".join(t for t in texts if "error" in t.lower())[-1500:]
                raise ResticError(f"restic check found problems in {repository_label(repository)}: "
                                  f"{found or exc}") from None
            raise
    last = [t for t in texts if t and not t.startswith("[")]
    return f"restic check (read {subset} of the data): {last[-1] if last else 'no errors were found'}"
