"""The file browser's rows. A page shows up to 500 of them; rendered here, in one pass per
row, they cost about a seventh of the same markup as template tags (bench/browse.py)."""

from html import escape
from urllib.parse import quote

from django import template
from django.utils.safestring import mark_safe

from backups.file_index import entry_time
from backups.files_selectors import mode_text
from backups.models import BackupEntry
from project.sizes import human_size

register = template.Library()

_DIR, _LINK, _HARD = BackupEntry.Kind.DIR, BackupEntry.Kind.SYMLINK, BackupEntry.Kind.HARDLINK
_DOWNLOADABLE = {BackupEntry.Kind.FILE, _DIR, _HARD}
NBSP = "\xa0"  # keeps a size's number and unit together, as the |size filter does


def modified_text(mtime) -> str:
    when = entry_time(mtime)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "—"


def _esc(value) -> str:
    return escape(str(value), quote=True)


def _name_cell(e: BackupEntry, files_url: str) -> str:
    if e.kind == _DIR:
        return f'<a class="folder" href="{files_url}?path={_esc(quote(e.path))}">{_esc(e.name)}/</a>'
    if e.kind == _LINK:
        return f'{_esc(e.name)} <span class="muted">→ {_esc(e.link)}</span>'
    if e.kind == _HARD:
        return f'{_esc(e.name)} <span class="muted">(hard link to {_esc(e.link)})</span>'
    return _esc(e.name)


def _download_cell(e: BackupEntry, download_url: str, restic: bool) -> str:
    if e.kind not in _DOWNLOADABLE:
        return ""
    if restic:
        return (f'<button class="link" type="submit" form="extract-form" name="path" value="{_esc(e.path)}">'
                "Prepare download</button>")
    tar = " .tar" if e.kind == _DIR else ""
    return f'<a href="{download_url}?path={_esc(quote(e.path))}" download hx-boost="false">Download{tar}</a>'


@register.simple_tag(takes_context=True)
def file_rows(context, rows, *, search: bool):
    """The <tr>s of a folder's page or a search's hits (the columns of files.html's head).
    Every value from the index is escaped (names are untrusted: they come from the volume)."""
    files_url, download_url = _esc(context["files_url"]), _esc(context.get("download_url", ""))
    can_restore, can_download, restic = context.get("can_restore"), context.get("can_download"), context.get("restic")
    out = []
    for e in rows:
        path = _esc(e.path)
        cells = [f'<td><input type="checkbox" name="paths" value="{path}" aria-label="Select {_esc(e.name)}"></td>'
                 if can_restore else "", f'<td class="break">{_name_cell(e, files_url)}</td>']
        if search:
            cells.append(f'<td class="break"><a href="{files_url}?path={_esc(quote(e.parent))}">'
                         f"{_esc(e.parent or '/')}</a></td>")
        size = ('<span class="muted">—</span>' if e.kind == _DIR else
                f'<span title="{e.size} bytes">{_esc(human_size(e.size)).replace(" ", NBSP)}</span>')
        cells.append(f'<td class="num">{size}</td><td class="mono">{e.uid}:{e.gid}</td>'
                     f'<td class="mono">{mode_text(e)}</td><td>{modified_text(e.mtime)}</td>')
        if can_download:
            cells.append(f'<td class="row-actions">{_download_cell(e, download_url, restic)}</td>')
        out.append(f'<tr data-path="{path}" data-kind="{_esc(e.kind)}">{"".join(cells)}</tr>')
    return mark_safe("\n".join(out))  # built from escaped values above
