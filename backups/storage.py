"""Where archives live: a small interface, and the local folder that implements it.

Keys are relative, "/"-separated paths such as `shop_db/shop_db-20240501T102030Z.tar.zst`:
one folder per volume, a UTC timestamp in each name. Beside each archive its manifest,
`<archive key>.manifest.json`.

Writes are atomic: `open_temp_writer(key)` writes under a hidden temporary name in the
same folder; `commit()` flushes, fsyncs, renames to the final name and fsyncs the
folder, so a crash leaves either nothing or a temporary file, never a partial file
under a final name. Temporary names carry a token (the backup's uid) so a recovery
step can remove those of dead jobs (`remove_temp_files`).

An S3 bucket implements the same interface (backups.s3.S3Storage: a streamed multipart
upload, "commit" = complete the upload; manifests as small objects).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from project.errors import CargoholdError

logger = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".partial"
# Keys are built by us from engine names ([A-Za-z0-9][A-Za-z0-9_.-]*) and timestamps;
# anything else (from a manifest, a URL) is refused before touching the file system.
_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$")


class StorageError(CargoholdError):
    pass


def check_key(key: str) -> str:
    parts = key.split("/") if isinstance(key, str) else []
    if not parts or len(parts) > 8 or not all(_KEY_PART.match(p) and p not in (".", "..") for p in parts):
        raise StorageError(f"Refusing the storage key {key!r}: it is not a plain relative path.")
    return key


def manifest_key(archive_key: str) -> str:
    return archive_key + MANIFEST_SUFFIX


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float


class TempWriter(ABC):
    """A file being written under a temporary name. Use as a context manager: leaving
    the block without `commit()` (an exception, a cancel) removes the temporary file."""

    key: str

    @abstractmethod
    def write(self, data) -> int: ...

    @abstractmethod
    def commit(self) -> None:
        """Make the bytes durable and visible under the final key, atomically."""

    @abstractmethod
    def abort(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or not getattr(self, "committed", False):
            self.abort()
        return False


class Storage(ABC):
    name: str = "abstract"

    @abstractmethod
    def open_temp_writer(self, key: str, *, token: str = "") -> TempWriter: ...

    @abstractmethod
    def open_reader(self, key: str) -> BinaryIO: ...

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        """A binary reader of `length` bytes of the object from offset `start` (fewer
        when the object ends first): one member of an archive without reading the rest."""
        raise StorageError(f"{self.name} storage cannot read part of an object.")

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> StoredObject: ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed. Missing objects are not an error."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> Iterator[str]: ...

    @abstractmethod
    def remove_temp_files(self, *, is_dead: Callable[[str, float], bool]) -> list[str]:
        """Remove the temporary files for which `is_dead(token, age_seconds)` is true
        (writers that died before committing); returns what was removed."""

    def location(self, key: str) -> str:
        """Where a person finds the object (a path for local storage, a URL otherwise)."""
        return key

    def local_path(self, key: str) -> Path | None:
        """A path on this machine, when there is one (lets downloads use sendfile)."""
        return None

    def sha256(self, key: str) -> str:
        """The SHA-256 of a stored object, read back in chunks (bounded memory)."""
        from tarstream import HashingReader

        with self.open_reader(key) as f:
            reader = HashingReader(f)
            reader.drain()
        return reader.hexdigest()

    # --- manifests: small JSON documents beside the archives --------------------------

    def write_json(self, key: str, data: dict, *, token: str = "") -> None:
        body = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True).encode() + b"\n"
        with self.open_temp_writer(key, token=token) as writer:
            writer.write(body)
            writer.commit()

    def read_json(self, key: str) -> dict:
        with self.open_reader(key) as f:
            raw = f.read(4 * 1024 * 1024 + 1)
        if len(raw) > 4 * 1024 * 1024:
            raise StorageError(f"{key} is larger than 4 MiB: not a manifest.")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StorageError(f"{key} is not valid JSON ({exc}).") from None
        if not isinstance(data, dict):
            raise StorageError(f"{key} is not a JSON object.")
        return data

    def list_manifests(self) -> Iterator[tuple[str, str]]:
        """(manifest key, archive key) for every manifest in storage."""
        for key in self.list_keys():
            if key.endswith(MANIFEST_SUFFIX):
                yield key, key[: -len(MANIFEST_SUFFIX)]


# --- local folder --------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _explain_os_error(action: str, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    return StorageError(f"{action} failed: {reason}.")


class LocalTempWriter(TempWriter):
    def __init__(self, storage: "LocalStorage", key: str, token: str):
        self.key = key
        self.storage = storage
        self.final = storage.path(key)
        name = f"{TEMP_PREFIX}{self.final.name}.{token or os.getpid()}{TEMP_SUFFIX}"
        self.temp = self.final.with_name(name)
        self.committed = False
        self.bytes_written = 0
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: never write into someone else's temporary file.
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except OSError as exc:
            raise _explain_os_error(f"Creating {self.temp} in the backup folder", exc) from exc
        self._file = os.fdopen(fd, "wb", buffering=0)

    def write(self, data) -> int:
        try:
            # Unbuffered raw writes of our 1 MiB chunks: no second copy in a buffer.
            view = memoryview(data)
            while view:
                n = self._file.write(view)
                view = view[n:]
        except OSError as exc:
            raise _explain_os_error(f"Writing {self.temp}", exc) from exc
        self.bytes_written += len(data)
        return len(data)

    def commit(self) -> None:
        if self.final.exists():
            raise StorageError(f"{self.final} already exists; refusing to overwrite it.")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.rename(self.temp, self.final)
            _fsync_dir(self.final.parent)
        except OSError as exc:
            raise _explain_os_error(f"Saving {self.final}", exc) from exc
        self.committed = True

    def abort(self) -> None:
        if self.committed:
            return
        try:
            self._file.close()
        except OSError:
            pass
        try:
            self.temp.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            logger.warning("could not remove %s; the recovery step will", self.temp)


class _LimitedReader(io.RawIOBase):
    """At most `left` bytes of an open file (a range of it); closes the file with itself."""

    def __init__(self, raw: BinaryIO, left: int):
        super().__init__()
        self._raw = raw
        self._left = left

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._raw.read(size)
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class LocalStorage(Storage):
    """Archives in a folder on this machine (BACKUP_ROOT)."""

    name = "local"

    def __init__(self, root: str | Path, *, must_exist: bool = False):
        self.root = Path(root)
        # A repository's own folder (not the built-in one, made on first backup) that is
        # missing is a problem to report (an unmounted disk), not an empty listing: every
        # backup in it would look gone, and retention would act on that.
        self.must_exist = must_exist

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def open_temp_writer(self, key: str, *, token: str = "") -> LocalTempWriter:
        if token and not _KEY_PART.match(token):
            raise StorageError("Invalid temporary-file token.")
        return LocalTempWriter(self, key, token)

    def open_reader(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise StorageError(f"The archive {self.location(key)} is missing from storage.") from None
        except OSError as exc:
            raise _explain_os_error(f"Opening {self.location(key)}", exc) from exc

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        if start < 0 or length < 0:
            raise StorageError("A range starts at 0 or later and has a length of 0 or more.")
        f = self.open_reader(key)
        try:
            f.seek(start)
        except OSError as exc:
            f.close()
            raise _explain_os_error(f"Reading {self.location(key)}", exc) from exc
        return _LimitedReader(f, length)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def stat(self, key: str) -> StoredObject:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            raise StorageError(f"The archive {self.location(key)} is missing from storage.") from None
        return StoredObject(key=key, size=st.st_size, modified=st.st_mtime)

    def delete(self, key: str) -> bool:
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _explain_os_error(f"Deleting {path}", exc) from exc
        try:
            _fsync_dir(path.parent)
            path.parent.rmdir()  # only succeeds when the volume's folder is now empty
        except OSError:
            pass
        return True

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            if self.must_exist:
                raise StorageError(f"The repository folder {self.root} is not there (a disk not mounted?): nothing "
                                   "was listed.")
            return
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            rel = Path(folder).relative_to(self.root)
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue
                key = "/".join((*rel.parts, name))
                if key.startswith(prefix):
                    try:
                        yield check_key(key)
                    except StorageError:
                        logger.warning("ignoring %s in the backup folder: not a name Cargohold writes", key)

    def temp_files(self) -> Iterator[Path]:
        if self.root.is_dir():
            yield from self.root.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")

    def remove_temp_files(self, *, is_dead: Callable[[str, float], bool]) -> list[str]:
        removed = []
        now = time.time()
        for path in self.temp_files():
            token = path.name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[-1]
            try:
                if not is_dead(token, now - path.stat().st_mtime):
                    continue
                path.unlink()
                removed.append(str(path))
            except FileNotFoundError:
                continue
            except OSError:
                logger.warning("could not remove the temporary file %s", path)
        return removed

    def location(self, key: str) -> str:
        return str(self.path(key))

    def local_path(self, key: str) -> Path | None:
        return self.path(key)


def get_storage() -> Storage:
    """The built-in local folder (read at call time, so tests can point BACKUP_ROOT elsewhere)."""
    return LocalStorage(settings.BACKUP_ROOT)


def storage_for(repository=None) -> Storage:
    """The archive storage of a repository (archive format); None: the default one."""
    from repositories.selectors import repository_default

    repo = repository or repository_default()
    if repo.is_restic:
        raise StorageError(f"{repo.name} is a restic repository: it holds snapshots, not archives.")
    if repo.builtin:
        return LocalStorage(settings.BACKUP_ROOT)
    location = repo.location
    if location.kind == "local":
        return LocalStorage(location.path, must_exist=True)
    from backups.s3 import S3Storage

    return S3Storage.for_repository(repo)


def archive_storages():
    """(repository, storage) for every archive repository, the built-in folder first
    (repository None when no row names it yet); each storage once, even when two rows
    name the same folder. Unreachable ones are the caller's to report (their calls raise)."""
    from repositories.models import Repository

    seen: set[str] = set()
    builtin = Repository.objects.filter(builtin=True).first()
    pairs = [(builtin, get_storage())]
    for repo in Repository.objects.filter(format=Repository.Format.ARCHIVE, builtin=False).order_by("name"):
        try:
            pairs.append((repo, storage_for(repo)))
        except Exception as exc:
            logger.warning("repository %s: %s", repo.name, exc)
    for repo, storage in pairs:
        where = storage.location("x")
        if where in seen:
            continue
        seen.add(where)
        yield repo, storage


def backup_storage(backup) -> Storage:
    """Where a backup's archive is (rows from before repositories: the built-in folder)."""
    if backup.repository_id is None:
        return get_storage()
    return storage_for(backup.repository)
