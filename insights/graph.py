"""The sharing graph as plain data: who mounts what, grouped by Compose project, laid out.

Pure functions over small records (no database, no templates) so the rules are easy to
test: `graph_build` decides nodes, edges, flags and groups; `graph_layout` turns that
into coordinates for the SVG renderer (`insights.svg`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

NO_PROJECT = ""


# --- input records (what the selectors load from the mirror) --------------------------


@dataclass(frozen=True)
class VolumeRow:
    id: int
    name: str
    anonymous: bool = False
    size_bytes: int | None = None
    project: str = ""  # the volume's com.docker.compose.project label
    protected: bool = False
    hint: str = ""  # an anonymous volume's "mounted by … at …" (volumes.models.mount_hint)
    host: str = ""  # its host's name (hosts); "" where it does not matter


@dataclass(frozen=True)
class ContainerRow:
    id: int
    name: str
    state: str = "running"
    project: str = ""
    service: str = ""
    image: str = ""
    size_rw: int | None = None
    host: str = ""


@dataclass(frozen=True)
class MountRow:
    container_id: int
    kind: str  # volume / bind / tmpfs / ...
    destination: str
    read_only: bool = False
    volume_id: int | None = None
    source: str = ""


# --- the graph --------------------------------------------------------------------------


@dataclass
class VolumeNode:
    row: VolumeRow
    # Counted over the whole mirror, also when the drawing shows a subset.
    users: int = 0
    writers: int = 0

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def unused(self) -> bool:
        return self.users == 0

    @property
    def rw_shared(self) -> bool:
        """Written by more than one container: a risk unless the software coordinates."""
        return self.writers > 1


@dataclass
class ContainerNode:
    row: ContainerRow
    # Bind mounts and tmpfs are not nodes: they belong to this container alone.
    binds: list[MountRow] = field(default_factory=list)
    tmpfs: list[MountRow] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def running(self) -> bool:
        return self.row.state in ("running", "restarting", "paused")


@dataclass
class Edge:
    container_id: int
    volume_id: int
    read_only: bool  # True only when every mount of the volume in this container is read-only
    destinations: tuple[str, ...]


@dataclass
class Group:
    project: str  # NO_PROJECT for containers outside Compose
    containers: list[ContainerNode] = field(default_factory=list)
    volumes: list[VolumeNode] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Compose project {self.project}" if self.project else "Not in a Compose project"


@dataclass
class Graph:
    groups: list[Group]
    unused: list[VolumeNode]  # volumes no container mounts, drawn apart: no edges to route
    edges: list[Edge]
    projects: list[str]  # every project in the mirror, for the filter

    @property
    def volumes(self) -> list[VolumeNode]:
        return [v for g in self.groups for v in g.volumes] + self.unused

    @property
    def containers(self) -> list[ContainerNode]:
        return [c for g in self.groups for c in g.containers]

    def volume(self, name: str) -> VolumeNode | None:
        return next((v for v in self.volumes if v.name == name), None)

    def container(self, name: str) -> ContainerNode | None:
        return next((c for c in self.containers if c.name == name), None)


def _project_order(project: str) -> tuple:
    return (project == NO_PROJECT, project.lower(), project)


def graph_build(
    volumes: list[VolumeRow],
    containers: list[ContainerRow],
    mounts: list[MountRow],
    *,
    project: str | None = None,
    focus_volume: str | None = None,
    focus_container: str | None = None,
    show_unused: bool = True,
) -> Graph:
    """Nodes, edges and groups; optionally only a project or one node's neighbourhood.

    - project: that project's containers, the volumes they mount, the project's unused
      volumes, and any other container mounting those volumes (sharing across projects
      stays visible).
    - focus_volume: the volume and the containers mounting it.
    - focus_container: the container, its volumes, and the other containers using them.
    Flags (users, writers) always count the whole mirror.
    """
    volume_by_id = {v.id: v for v in volumes}
    container_by_id = {c.id: c for c in containers}

    # One edge per (container, volume): read-only only if every such mount is read-only.
    edge_modes: dict[tuple[int, int], list[MountRow]] = defaultdict(list)
    binds: dict[int, list[MountRow]] = defaultdict(list)
    tmpfs: dict[int, list[MountRow]] = defaultdict(list)
    for m in mounts:
        if m.container_id not in container_by_id:
            continue
        if m.kind == "volume" and m.volume_id in volume_by_id:
            edge_modes[(m.container_id, m.volume_id)].append(m)
        elif m.kind == "tmpfs":
            tmpfs[m.container_id].append(m)
        elif m.kind != "volume":
            binds[m.container_id].append(m)
    edges_all = [
        Edge(
            container_id=cid,
            volume_id=vid,
            read_only=all(m.read_only for m in ms),
            destinations=tuple(sorted({m.destination for m in ms})),
        )
        for (cid, vid), ms in edge_modes.items()
    ]
    users: dict[int, set[int]] = defaultdict(set)
    writers: dict[int, set[int]] = defaultdict(set)
    by_container: dict[int, list[Edge]] = defaultdict(list)
    for e in edges_all:
        users[e.volume_id].add(e.container_id)
        if not e.read_only:
            writers[e.volume_id].add(e.container_id)
        by_container[e.container_id].append(e)

    # Which nodes to draw.
    if focus_volume is not None:
        vol_ids = {v.id for v in volumes if v.name == focus_volume}
        cont_ids = {cid for vid in vol_ids for cid in users[vid]}
    elif focus_container is not None:
        seed = {c.id for c in containers if c.name == focus_container}
        vol_ids = {e.volume_id for cid in seed for e in by_container[cid]}
        cont_ids = seed | {cid for vid in vol_ids for cid in users[vid]}
    elif project is not None:
        seed = {c.id for c in containers if c.project == project}
        vol_ids = {e.volume_id for cid in seed for e in by_container[cid]}
        vol_ids |= {v.id for v in volumes if v.project == project and not users[v.id]}
        cont_ids = seed | {cid for vid in vol_ids for cid in users[vid]}
    else:
        vol_ids = set(volume_by_id)
        cont_ids = set(container_by_id)
    if not show_unused:
        vol_ids = {vid for vid in vol_ids if users[vid]}

    edges = [e for e in edges_all if e.container_id in cont_ids and e.volume_id in vol_ids]
    vnodes = {
        vid: VolumeNode(row=volume_by_id[vid], users=len(users[vid]), writers=len(writers[vid])) for vid in vol_ids
    }
    cnodes = {
        cid: ContainerNode(
            row=container_by_id[cid],
            binds=sorted(binds[cid], key=lambda m: m.destination),
            tmpfs=sorted(tmpfs[cid], key=lambda m: m.destination),
        )
        for cid in cont_ids
    }

    groups: dict[str, Group] = {}
    for cnode in sorted(cnodes.values(), key=lambda c: (c.row.service or c.name, c.name)):
        groups.setdefault(cnode.row.project, Group(project=cnode.row.project)).containers.append(cnode)
    # The chosen project first; the others (sharing its volumes) after it.
    ordered = sorted(groups.values(), key=lambda g: (g.project != project, *_project_order(g.project)))
    group_of_container = {c.id: g for g in ordered for c in g.containers}

    unused = []
    drawn_users: dict[int, list[int]] = defaultdict(list)
    for e in edges:
        drawn_users[e.volume_id].append(e.container_id)
    for vnode in sorted(vnodes.values(), key=lambda v: (v.row.anonymous, v.name)):
        user_groups = [group_of_container[cid] for cid in drawn_users[vnode.id]]
        if not user_groups:
            unused.append(vnode)
            continue
        # The volume sits beside the group that uses it most; its own Compose label breaks ties.
        counts: dict[str, int] = defaultdict(int)
        for g in user_groups:
            counts[g.project] += 1
        best = max(counts.values())
        candidates = sorted((p for p, n in counts.items() if n == best), key=_project_order)
        home = vnode.row.project if vnode.row.project in candidates else candidates[0]
        groups[home].volumes.append(vnode)

    return Graph(
        groups=ordered,
        unused=unused,
        edges=sorted(edges, key=lambda e: (e.container_id, e.volume_id)),
        projects=sorted({c.project for c in containers if c.project} | {v.project for v in volumes if v.project},
                        key=str.lower),
    )


# --- layout -------------------------------------------------------------------------------

CONTAINER_X = 12
NODE_WIDTH = 300
VOLUME_X = CONTAINER_X + NODE_WIDTH + 280
WIDTH = VOLUME_X + NODE_WIDTH + 12
GROUP_HEADER = 30
NODE_GAP = 8
GROUP_GAP = 18
LINE = 16
NODE_BASE = 38  # two lines: name, then state / size
MAX_EXTRA_LINES = 4  # bind/tmpfs lines drawn on a container before "+n more"
UNUSED_COLUMNS = 3
UNUSED_WIDTH = (WIDTH - 2 * CONTAINER_X - (UNUSED_COLUMNS - 1) * NODE_GAP) // UNUSED_COLUMNS


@dataclass
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class Layout:
    width: int
    height: int
    group_boxes: list[tuple[Group, Box]]
    containers: list[tuple[ContainerNode, Box]]
    volumes: list[tuple[VolumeNode, Box]]
    edges: list[tuple[Edge, tuple[float, float], tuple[float, float]]]  # edge, start, end
    unused_box: Box | None


def container_height(node: ContainerNode) -> int:
    extra = len(node.binds) + len(node.tmpfs)
    lines = min(extra, MAX_EXTRA_LINES + 1) if extra > MAX_EXTRA_LINES else extra
    return NODE_BASE + lines * LINE


def graph_layout(graph: Graph) -> Layout:
    """Two columns per project band: containers left, their volumes right, edges between.

    Volumes in a band are ordered by the mean height of the containers they connect to
    (a barycenter pass), which removes most crossings in real Compose stacks. Unused
    volumes have no edges, so they go in a compact grid at the bottom.
    """
    y = 0
    group_boxes, cboxes, vboxes = [], [], []
    cbox_by_id: dict[int, Box] = {}
    vbox_by_id: dict[int, Box] = {}
    edges_by_volume: dict[int, list[int]] = defaultdict(list)
    for e in graph.edges:
        edges_by_volume[e.volume_id].append(e.container_id)

    for group in graph.groups:
        top = y
        cy = y + GROUP_HEADER
        for cnode in group.containers:
            box = Box(CONTAINER_X, cy, NODE_WIDTH, container_height(cnode))
            cboxes.append((cnode, box))
            cbox_by_id[cnode.id] = box
            cy += box.h + NODE_GAP

        def barycenter(v: VolumeNode) -> float:
            ys = [cbox_by_id[cid].cy for cid in edges_by_volume[v.id] if cid in cbox_by_id]
            return sum(ys) / len(ys) if ys else float("inf")

        group.volumes.sort(key=lambda v: (barycenter(v), v.name))
        vy = y + GROUP_HEADER
        lowest = max(vy, cy - NODE_GAP - NODE_BASE)  # aligning must not make the band taller
        for vnode in group.volumes:
            # Pull a volume down beside its containers when there is room, never upwards.
            centre = barycenter(vnode)
            if centre != float("inf"):
                vy = max(vy, min(int(centre - NODE_BASE / 2), lowest))
            box = Box(VOLUME_X, vy, NODE_WIDTH, NODE_BASE)
            vboxes.append((vnode, box))
            vbox_by_id[vnode.id] = box
            vy += box.h + NODE_GAP
        bottom = max(cy, vy)
        group_boxes.append((group, Box(0, top, WIDTH, bottom - top)))
        y = bottom + GROUP_GAP

    unused_box = None
    if graph.unused:
        top = y
        rows = (len(graph.unused) + UNUSED_COLUMNS - 1) // UNUSED_COLUMNS
        for i, vnode in enumerate(graph.unused):
            col, row = i % UNUSED_COLUMNS, i // UNUSED_COLUMNS
            box = Box(CONTAINER_X + col * (UNUSED_WIDTH + NODE_GAP), top + GROUP_HEADER + row * (NODE_BASE + NODE_GAP),
                      UNUSED_WIDTH, NODE_BASE)
            vboxes.append((vnode, box))
            vbox_by_id[vnode.id] = box
        height = GROUP_HEADER + rows * (NODE_BASE + NODE_GAP)
        unused_box = Box(0, top, WIDTH, height)
        y = top + height + GROUP_GAP

    edges = []
    for e in graph.edges:
        c, v = cbox_by_id.get(e.container_id), vbox_by_id.get(e.volume_id)
        if c and v:
            edges.append((e, (c.x + c.w, c.cy), (v.x, v.cy)))
    return Layout(
        width=WIDTH, height=max(y, 60), group_boxes=group_boxes, containers=cboxes, volumes=vboxes,
        edges=edges, unused_box=unused_box,
    )
