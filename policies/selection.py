"""Which volumes a policy covers, evaluated against the mirror when it runs.

Three kinds of selection:
- names: an explicit list of volume references (hosts.refs: `name` on the default host,
  `host:name` on another; a named volume that does not exist yet is kept in the list: its
  runs fail with a clear message until it does);
- label: `key=value` or `key`, several separated by commas, all must match (on every host);
- compose: a Compose project: the volumes labelled with it, and the volumes its
  containers mount (an `external: true` volume belongs to the project that uses it), on
  every host: a project deployed on several hosts is covered on each.

Evaluated at run time, so volumes created later are picked up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from project.errors import CargoholdError

NAMES, LABEL, COMPOSE = "names", "label", "compose"
KINDS = (NAMES, LABEL, COMPOSE)
COMPOSE_LABEL = "com.docker.compose.project"
# The engine's own rule for volume names.
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,254}$")
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class SelectionError(CargoholdError):
    pass


@dataclass(frozen=True)
class Selection:
    kind: str
    names: tuple[str, ...] = ()
    labels: tuple[tuple[str, str | None], ...] = ()  # (key, value or None for "has the key")
    project: str = ""

    def describe(self) -> str:
        if self.kind == NAMES:
            return "volumes " + ", ".join(self.names)
        if self.kind == LABEL:
            return "volumes labelled " + ", ".join(k if v is None else f"{k}={v}" for k, v in self.labels)
        return f"volumes of the Compose project {self.project}"

    def matches(self, name: str, labels: dict, mounted_by_projects: set[str] = frozenset()) -> bool:
        if self.kind == NAMES:
            return name in self.names
        if self.kind == LABEL:
            return all(k in labels and (v is None or str(labels[k]) == v) for k, v in self.labels)
        return str(labels.get(COMPOSE_LABEL, "")) == self.project or self.project in mounted_by_projects


def parse(kind: str, value: str) -> Selection:
    """Validate a selection; raise SelectionError saying what is wrong."""
    value = (value or "").strip()
    if kind == NAMES:
        names = [n for n in re.split(r"[\s,]+", value) if n]
        if not names:
            raise SelectionError("List at least one volume name.")
        from hosts import refs

        # A name, or `host:name` for a volume of another host (hosts.refs).
        bad = [n for n in names
               if not (refs.HOST_NAME.match(refs.split_ref(n)[0]) and VOLUME_NAME.match(refs.split_ref(n)[1]))]
        if bad:
            raise SelectionError(f"Not a valid volume name: {bad[0][:80]!r}.")
        return Selection(NAMES, names=tuple(dict.fromkeys(names)))
    if kind == LABEL:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise SelectionError("Enter a label selector: `key=value` or `key` (several separated by commas).")
        labels = []
        for part in parts:
            key, sep, val = part.partition("=")
            key = key.strip()
            if not LABEL_KEY.match(key):
                raise SelectionError(f"Not a valid label key: {key[:80]!r}.")
            labels.append((key, val.strip() if sep else None))
        return Selection(LABEL, labels=tuple(labels))
    if kind == COMPOSE:
        if not value:
            raise SelectionError("Enter the Compose project's name.")
        if not PROJECT_NAME.match(value):
            raise SelectionError(f"Not a valid Compose project name: {value[:80]!r}.")
        return Selection(COMPOSE, project=value)
    raise SelectionError(f"Unknown kind of selection {kind!r}.")


def selected_volume_names(selection: Selection) -> list[str]:
    """The names the selection covers now, from the mirror (present volumes only; an
    explicit name is returned even when the mirror does not have it, so its run can
    say so)."""
    from volumes.models import Volume
    from volumes.selectors import compose_project_volumes

    if selection.kind == NAMES:
        return list(selection.names)
    volumes = Volume.objects.present().only("name", "labels")
    if selection.kind == LABEL:
        # Narrow in SQL on each key (and its value's text), then match exactly in Python
        # what is left: only the matching volumes' labels are loaded.
        from django.db.models import Q
        from django.db.models.fields.json import KeyTextTransform
        from django.db.models.lookups import Exact

        for key, val in selection.labels:
            volumes = volumes.filter(Q(labels__has_key=key) if val is None else Q(Exact(KeyTextTransform(key, "labels"), val)))
        return sorted(v.name for v in volumes if selection.matches(v.name, v.labels))
    return [v.name for v in compose_project_volumes(project=selection.project)]


@dataclass(frozen=True)
class Preview:
    """What a selection covers now, for the policy form's live preview."""

    matched: list[str]  # on the engine (as the mirror knows it)
    missing: list[str]  # listed by name but not on the engine (their runs fail until they exist)


def selection_preview(selection: Selection, *, limit: int = 200, within=None) -> Preview:
    """`within`: the volumes the viewer may see (accounts.scoping); others count as missing."""
    from volumes.models import Volume

    names = selected_volume_names(selection)
    present = set((Volume.objects.all() if within is None else within).present().filter(name__in=names).values_list("name", flat=True))
    return Preview(matched=[n for n in names if n in present][:limit], missing=[n for n in names if n not in present])


def selection_q(selection: Selection):
    """The volumes `selection` matches (Selection.matches), as a condition (Q) on the mirror's
    Volume rows: the one SQL form of a selection, for policies' figures and teams' rules."""
    from django.db.models import Q
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.lookups import Exact

    from volumes.models import Mount

    if selection.kind == NAMES:
        return Q(name__in=list(selection.names))
    if selection.kind == LABEL:
        q = Q()
        for key, value in selection.labels:
            # Exact on the key's text (label keys hold dots and may hold "__"); Docker's
            # labels are strings, so text equality is Python's.
            q &= Q(labels__has_key=key) if value is None else Q(Exact(KeyTextTransform(key, "labels"), value))
        return q
    # A Compose project's volumes: labelled with it, or mounted by its present containers
    # (one uncorrelated subquery).
    mounted = Mount.objects.filter(container__gone_since__isnull=True, container__compose_project=selection.project,
                                   volume__isnull=False).values("volume_id")
    return Q(Exact(KeyTextTransform(COMPOSE_LABEL, "labels"), selection.project)) | Q(pk__in=mounted)
