"""Server-rendered SVG: the sharing graph and the usage chart.

Built as strings in Python rather than in templates: a graph of 1,000 volumes is a few
thousand elements, and a loop here is an order of magnitude cheaper than template tags.
Every name comes from the engine and is untrusted: all text and attribute values go
through `escape`, and links are built with `reverse` and `urlencode`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from project.sizes import human_size
from django.urls import reverse
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from hosts.refs import split_ref
from insights.graph import LINE, MAX_EXTRA_LINES, Layout

NAME_CHARS = 36  # what fits a 300 px node in 13 px bold


def _clip(text: str, limit: int = NAME_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(value: int | None) -> str:
    return human_size(value) if value is not None else "size ?"


_MARKER = "cargohold-url-marker"


def _url_for(view: str):
    """reverse(view, args=[name]) for many names: resolved once, each name then quoted as
    reverse quotes it (a graph of 1,000 volumes spent a fifth of its time in reverse)."""
    head, tail = reverse(view, args=[_MARKER]).split(_MARKER)

    def url(name: str) -> str:
        if not name or "/" in name:  # not a path segment: reverse's own refusal (NoReverseMatch)
            return reverse(view, args=[name])
        return head + quote(name, safe=RFC3986_SUBDELIMS + "/~:@") + tail

    return url


def volume_url(name: str) -> str:
    return reverse("volume_detail", args=[name])


def container_url(name: str, *, base: str | None = None) -> str:
    return f"{base or reverse('container_list')}?{urlencode({'q': name})}"


def _mount_line(kind: str, source: str, destination: str, read_only: bool) -> str:
    mode = "ro" if read_only else "rw"
    if kind == "tmpfs":
        return f"tmpfs → {destination} {mode}"
    return f"{kind} {source} → {destination} {mode}"


def graph_svg(layout: Layout, *, label: str = "Sharing graph") -> SafeString:
    volume_link, containers = _url_for("volume_detail"), reverse("container_list")
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sharing-graph" width="{layout.width}" '
        f'height="{layout.height}" viewBox="0 0 {layout.width} {layout.height}" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    for i, (group, box) in enumerate(layout.group_boxes):
        n_c, n_v = len(group.containers), len(group.volumes)
        out.append(
            f'<g class="g-band" data-project="{escape(group.project)}">'
            f'<rect class="g-band-bg{" g-odd" if i % 2 else ""}" x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" rx="6"/>'
            f'<text class="g-band-title" x="{box.x + 12}" y="{box.y + 20}">{escape(_clip(group.title, 80))}'
            f' · {n_c} container{"s" if n_c != 1 else ""} · {n_v} volume{"s" if n_v != 1 else ""}</text></g>'
        )
    if layout.unused_box:
        box = layout.unused_box
        n = sum(1 for v, _ in layout.volumes if v.unused)
        out.append(
            f'<g class="g-band g-unused-band"><rect class="g-band-bg" x="{box.x}" y="{box.y}" width="{box.w}" '
            f'height="{box.h}" rx="6"/><text class="g-band-title" x="{box.x + 12}" y="{box.y + 20}">'
            f'Unused volumes · {n} · no container mounts them</text></g>'
        )

    names_c = {c.id: c.name for c, _ in layout.containers}
    names_v = {v.id: v for v, _ in layout.volumes}
    for edge, (x1, y1), (x2, y2) in layout.edges:
        vnode = names_v[edge.volume_id]
        classes = "g-edge " + ("g-ro" if edge.read_only else "g-rw")
        if vnode.rw_shared and not edge.read_only:
            classes += " g-shared"
        mid = (x1 + x2) / 2
        tip = (
            f"{names_c[edge.container_id]} → {vnode.name} at {', '.join(edge.destinations)} "
            f"({'read-only' if edge.read_only else 'read-write'})"
        )
        out.append(
            f'<path class="{classes}" d="M{x1:.0f} {y1:.0f} C{mid:.0f} {y1:.0f} {mid:.0f} {y2:.0f} {x2:.0f} {y2:.0f}">'
            f"<title>{escape(tip)}</title></path>"
        )

    for cnode, box in layout.containers:
        row = cnode.row
        state = "running" if cnode.running else "stopped"
        meta = " · ".join(p for p in (row.state or "?", row.service, _clip(row.image, 30)) if p)
        out.append(
            f'<a href="{escape(container_url(row.name, base=containers))}" data-node="container:{escape(row.name)}">'
            f'<g class="g-node g-container g-{state}"><title>{escape(row.name)} (container)</title>'
            f'<rect x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" rx="5"/>'
            f'<circle class="g-dot" cx="{box.x + 12}" cy="{box.y + 14}" r="4"/>'
            f'<text class="g-name" x="{box.x + 22}" y="{box.y + 18}">{escape(_clip(row.name, NAME_CHARS - 3))}</text>'
            f'<text class="g-meta" x="{box.x + 22}" y="{box.y + 32}">{escape(_clip(meta, 46))}</text>'
        )
        extra = [*cnode.binds, *cnode.tmpfs]
        shown = extra if len(extra) <= MAX_EXTRA_LINES else extra[:MAX_EXTRA_LINES]
        ly = box.y + 32
        for m in shown:
            ly += LINE
            out.append(
                f'<text class="g-mount g-{escape(m.kind)}" x="{box.x + 22}" y="{ly}">'
                f"<title>{escape(_mount_line(m.kind, m.source, m.destination, m.read_only))}</title>"
                f"{escape(_clip(_mount_line(m.kind, m.source, m.destination, m.read_only), 46))}</text>"
            )
        if len(extra) > len(shown):
            ly += LINE
            out.append(f'<text class="g-mount" x="{box.x + 22}" y="{ly}">+{len(extra) - len(shown)} more mounts</text>')
        out.append("</g></a>")

    for vnode, box in layout.volumes:
        row = vnode.row
        classes = ["g-node", "g-volume"]
        notes = [_size(row.size_bytes)]
        if row.anonymous:
            classes.append("g-anon")
            notes.append("anonymous")
        if vnode.unused:
            classes.append("g-unused")
            notes.append("unused")
        if vnode.rw_shared:
            classes.append("g-rw-shared")
            notes.append(f"written by {vnode.writers} containers")
        elif vnode.users:
            notes.append(f"{vnode.users} container{'s' if vnode.users != 1 else ''}")
        limit = NAME_CHARS if box.w >= 300 else int(NAME_CHARS * box.w / 300)
        # Anonymous names are 64 hex digits: the first 12 identify them, as docker's short ids do.
        # A graph shows one host's volumes: the name on its engine, without the host (hosts.refs).
        engine_name = split_ref(row.name)[1]
        shown = engine_name[:12] + "…" if row.anonymous and len(engine_name) > 16 else _clip(engine_name, limit)
        if row.hint:
            shown = _clip(f"{shown} {row.hint}", limit)
        out.append(
            f'<a href="{escape(volume_link(row.name))}" data-node="volume:{escape(row.name)}">'
            f'<g class="{" ".join(classes)}"><title>{escape(row.name)} (volume{escape(", " + row.hint if row.hint else "")})</title>'
            f'<rect x="{box.x}" y="{box.y}" width="{box.w}" height="{box.h}" rx="5"/>'
            f'<text class="g-name" x="{box.x + 10}" y="{box.y + 16}">{escape(shown)}</text>'
            f'<text class="g-meta" x="{box.x + 10}" y="{box.y + 30}">{escape(_clip(" · ".join(notes), limit + 6))}</text>'
            "</g></a>"
        )
    out.append("</svg>")
    return mark_safe("".join(out))


# --- usage chart -----------------------------------------------------------------------

CHART_W, CHART_H = 720, 220
PAD_L, PAD_R, PAD_T, PAD_B = 72, 16, 12, 28


def _ticks(start: datetime, end: datetime) -> tuple[timedelta, str]:
    span = end - start
    if span <= timedelta(days=1, hours=1):
        return timedelta(hours=4), "%H:%M"
    if span <= timedelta(days=8):
        return timedelta(days=1), "%a %d"
    return timedelta(days=5), "%b %d"


def usage_chart_svg(points: list[tuple[datetime, int]], *, start: datetime, end: datetime) -> SafeString:
    """Size over time: a line with its area, y axis in bytes, x axis in the range's units."""
    inner_w, inner_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" width="100%" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="Volume size over time">'
    ]
    sizes = [s for _, s in points]
    low, high = (min(sizes), max(sizes)) if sizes else (0, 1)
    # Start at zero unless that flattens a large volume's changes into a straight line.
    if low < high * 0.5 or high == 0:
        low = 0
    pad = max((high - low) * 0.08, 1)
    low, high = max(0, low - pad) if low else 0, high + pad
    total = (end - start).total_seconds() or 1

    def x(at: datetime) -> float:
        return PAD_L + inner_w * max(0.0, min(1.0, (at - start).total_seconds() / total))

    def y(size: float) -> float:
        return PAD_T + inner_h * (1 - (size - low) / (high - low))

    for i in range(5):
        value = low + (high - low) * i / 4
        yy = y(value)
        out.append(
            f'<line class="c-grid" x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            f'<text class="c-label" x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end">{escape(human_size(int(value)))}</text>'
        )
    step, fmt = _ticks(start, end)
    # Ticks on whole multiples of the step since the epoch: 00:00, 04:00... or midnights (UTC).
    step_s = int(step.total_seconds())
    tick = datetime.fromtimestamp(-(-int(start.timestamp()) // step_s) * step_s, tz=start.tzinfo)
    while tick <= end:
        xx = x(tick)
        out.append(
            f'<line class="c-grid" x1="{xx:.1f}" x2="{xx:.1f}" y1="{PAD_T}" y2="{CHART_H - PAD_B}"/>'
            f'<text class="c-label" x="{xx:.1f}" y="{CHART_H - 8}" text-anchor="middle">{escape(tick.strftime(fmt))}</text>'
        )
        tick += step
    if points:
        coords = " ".join(f"{x(at):.1f},{y(size):.1f}" for at, size in points)
        base = CHART_H - PAD_B
        first_x, last_x = x(points[0][0]), x(points[-1][0])
        out.append(f'<polygon class="c-area" points="{first_x:.1f},{base} {coords} {last_x:.1f},{base}"/>')
        out.append(f'<polyline class="c-line" points="{coords}"/>')
        at, size = points[-1]
        out.append(
            f'<circle class="c-last" cx="{x(at):.1f}" cy="{y(size):.1f}" r="3.5">'
            f"<title>{escape(human_size(size))} at {at:%Y-%m-%d %H:%M} UTC</title></circle>"
        )
    else:
        out.append(
            f'<text class="c-empty" x="{PAD_L + inner_w / 2:.0f}" y="{PAD_T + inner_h / 2:.0f}" text-anchor="middle">'
            "No samples in this range yet.</text>"
        )
    out.append("</svg>")
    return mark_safe("".join(out))
