"""Reads for the file browser of a backup's page and the API's files endpoint: the file
index (BackupEntry rows), database only. Paths come from query strings: untrusted, so
`clean_path` bounds and normalises them before any query."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from django.db.models import QuerySet

from backups import file_index
from backups.models import Backup, BackupEntry

PER_PAGE = 200  # a folder of 20,000 entries renders as 100 pages
SEARCH_LIMIT = 500
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_QUERY_CHARS = 255  # NAME_MAX: a search is for a name


class BadPath(ValueError):
    """A path from a request that can be no member of a backup."""


def clean_path(raw: str | None) -> str:
    """The relative, "/"-separated form of an untrusted path ("" is the volume's root).
    Leading, trailing and doubled slashes are dropped; "..", ".", control characters and
    paths longer than PATH_MAX are refused (BadPath)."""
    raw = raw or ""
    if len(raw) > MAX_PATH_CHARS:
        raise BadPath(f"A path is at most {MAX_PATH_CHARS} characters long.")
    if any(ord(c) < 32 or c == "\x7f" for c in raw):
        raise BadPath("A path cannot hold control characters.")
    parts = [p for p in raw.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise BadPath('A path cannot hold "." or ".." (paths are relative to the volume\'s root).')
    return "/".join(parts)


def clean_query(raw: str | None) -> str:
    return (raw or "").strip()[:MAX_QUERY_CHARS]


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    """[(name, path)] from the root to `path`, e.g. [("app", "app"), ("conf", "app/conf")]."""
    parts = path.split("/") if path else []
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def page_number(raw) -> int:
    """?page= from a request: a positive number, 1 when it is none."""
    try:
        return max(1, min(int(raw), 10**9))
    except (TypeError, ValueError):
        return 1


def matches(backup: Backup, query: str) -> QuerySet[BackupEntry]:
    """Entries whose *name* holds `query` (case-insensitive), by path; at most
    SEARCH_LIMIT. (file_index.index_search matches anywhere in the path: every file under
    a matching folder would fill the page.)"""
    if not query:
        return BackupEntry.objects.none()
    return BackupEntry.objects.filter(backup=backup, name__icontains=query).order_by("path")[:SEARCH_LIMIT]


# --- display ------------------------------------------------------------------------------

_TYPE_CHAR = {BackupEntry.Kind.DIR: "d", BackupEntry.Kind.SYMLINK: "l", BackupEntry.Kind.FILE: "-",
              BackupEntry.Kind.HARDLINK: "-"}


def mode_text(entry: BackupEntry) -> str:
    """`drwxr-xr-x`, as ls shows it (setuid, setgid and sticky bits included)."""
    bits = stat.filemode(stat.S_IFREG | (entry.mode & 0o7777))[1:]
    if entry.kind in _TYPE_CHAR:
        return _TYPE_CHAR[entry.kind] + bits
    return stat.filemode(entry.mode)[0] + bits if stat.S_IFMT(entry.mode) else "?" + bits


@dataclass(frozen=True)
class Listing:
    """What the browser shows for one request: a folder's page or a search's hits."""

    path: str
    query: str
    indexed: bool
    entry: BackupEntry | None = None  # the folder itself (None: the root)
    page: file_index.ChildrenPage | None = None
    hits: list | None = None
    missing: bool = False  # the path is not in this backup

    @property
    def is_search(self) -> bool:
        return self.hits is not None

    @property
    def limited(self) -> bool:
        return self.hits is not None and len(self.hits) >= SEARCH_LIMIT

    @property
    def rows(self) -> list:
        return self.hits if self.hits is not None else (self.page.entries if self.page else [])

    @property
    def count(self) -> int:
        return len(self.hits) if self.hits is not None else (self.page.total if self.page else 0)

    @property
    def pages(self) -> int:
        return max(1, -(-self.page.total // self.page.per_page)) if self.page else 1


def folder_entry(backup: Backup, path: str) -> tuple[BackupEntry | None, bool]:
    """(the entry at `path`, whether it is a folder of the backup; the root is one)."""
    if not path:
        return None, True
    entry = file_index.index_entry(backup, path)
    return entry, entry is not None and entry.kind == BackupEntry.Kind.DIR


def backup_listing(*, backup: Backup, path: str, query: str = "", page=1, per_page: int = PER_PAGE) -> Listing:
    """The folder `path` (already clean_path'ed) or, with `query`, the search's hits.
    A path that is no folder of the backup (unknown, or a file): `missing`."""
    if not file_index.index_has_entries(backup):
        return Listing(path=path, query=query, indexed=False)
    if query:
        return Listing(path=path, query=query, indexed=True, hits=list(matches(backup, query)))
    entry, is_folder = folder_entry(backup, path)
    if not is_folder:
        return Listing(path=path, query=query, indexed=True, entry=entry, missing=True)
    children = file_index.index_children(backup, path, page=page_number(page), per_page=per_page)
    return Listing(path=path, query=query, indexed=True, entry=entry, page=children)
