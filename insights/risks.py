"""Where data is at risk: rules from the volume best practices, as pure functions.

Each rule looks at the mirror's records (the same rows the graph uses) and returns
findings; each kind carries why it matters and what to do, shown once above its list.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from project.sizes import human_size

from insights.graph import ContainerRow, MountRow, VolumeRow

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITY_ORDER = {HIGH: 0, MEDIUM: 1, LOW: 2}

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Under /etc, a read-only mount of one file (/etc/localtime, /etc/hosts) is common and
# harmless; these hold secrets or control the host even when only read.
ETC_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private",
               "/etc/docker", "/etc/kubernetes")


@dataclass(frozen=True)
class Kind:
    slug: str
    title: str
    why: str
    todo: str


KINDS = {
    k.slug: k
    for k in [
        Kind(
            "sensitive-bind",
            "Bind mounts of sensitive host paths",
            "A container that can reach the Docker socket controls the engine, and with it the host as root "
            "(it can start a privileged container that mounts /); a read-only mount does not help, the socket still "
            "takes commands. A mount of /, /etc or the Docker data root lets the container read secrets and "
            "change the host's configuration or other containers' data behind Docker's back.",
            "Remove the mount unless the container truly needs it. Mount only the one file or folder needed, "
            "read-only. For tools that need the engine, put a socket proxy that allows only the calls they use "
            "in front of it.",
        ),
        Kind(
            "rw-shared",
            "Volumes written by several containers",
            "Two processes writing the same files without coordinating corrupt them: most databases and "
            "SQLite files assume a single writer. A backup taken while several writers run is also harder to "
            "make consistent.",
            "Mount the volume read-only everywhere except in the one container that owns the data, or make sure "
            "the software is built for shared access (and stop all writers for a consistent backup).",
        ),
        Kind(
            "writable-layer",
            "Containers with a large writable layer",
            "Files a container writes outside its volumes live in its writable layer: they are lost when the "
            "container is removed or recreated (a “docker compose up” after an image update does that), are "
            "not in any volume backup, and are slower to write through the storage driver.",
            "Run “docker diff <container>” to see which paths it writes, then mount a named volume there "
            "(or a tmpfs for scratch data) and recreate the container.",
        ),
        Kind(
            "anonymous-data",
            "Anonymous volumes that hold data",
            "An anonymous volume has a random name nobody will recognise. “docker compose down -v”, "
            "“docker run --rm” and “docker volume prune” remove it, and a recreated container gets a new, "
            "empty one while the old data sits orphaned.",
            "Copy the data into a named volume and mount that instead (in Compose, declare a named volume for "
            "the path), then back it up.",
        ),
        Kind(
            "no-backup",
            "Volumes without a recent backup",
            "A volume is one disk failure, one mistaken “docker volume rm” or one bad migration away from "
            "losing its data, and nothing can bring it back without a backup.",
            "Back it up now and give it a schedule. If it only holds caches that are rebuilt on their own, "
            "the risk may be acceptable.",
        ),
        Kind(
            "drill-failed",
            "Volumes whose restore drill failed",
            "A restore drill restored the volume's newest backup into a scratch volume and it did not come back "
            "as recorded (a damaged archive, missing files, a probe that failed): that backup may not restore "
            "when it is needed.",
            "Open the drill's job for what failed, take a new backup (stopping the containers or using a dump "
            "recipe for databases) and drill it again.",
        ),
    ]
}


# The fixes a finding's page offers (insights/_finding.html shows those the role may use).
BACKUP, POLICY, PRUNE = "backup", "policy", "prune"


@dataclass
class Finding:
    kind: str
    severity: str
    subject_type: str  # "volume" / "container"
    subject: str
    detail: str
    actions: tuple[str, ...] = ()
    host: str = ""  # the host of its volume or container (hosts)


@dataclass
class FindingGroup:
    kind: Kind
    findings: list[Finding] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return min((f.severity for f in self.findings), key=SEVERITY_ORDER.__getitem__, default=LOW)


@dataclass(frozen=True)
class RiskSettings:
    writable_layer_bytes: int = 100 * 1024 * 1024
    anonymous_volume_bytes: int = 1024 * 1024
    backup_max_age: timedelta = timedelta(days=7)
    extra_sensitive_paths: tuple[str, ...] = ()


def _norm(path: str) -> str:
    path = posixpath.normpath("/" + (path or "").lstrip("/"))
    return "/" + path.lstrip("/")


def _inside(path: str, parent: str) -> bool:
    return path == parent or parent == "/" or path.startswith(parent.rstrip("/") + "/")


def sensitive_reason(
    source: str, *, read_only: bool = False, data_root: str = "", extra: tuple[str, ...] = ()
) -> str | None:
    """Why a bind of `source` exposes the host, or None. Mounting a parent exposes what is in it."""
    path = _norm(source)
    if path == "/":
        return "the host's whole filesystem"
    for sock in DOCKER_SOCKETS:
        if _inside(sock, path):
            return "the Docker socket (full control of the engine)" if path == sock else f"{path}, which holds the Docker socket"
    if data_root:
        root = _norm(data_root)
        if _inside(path, root):
            return f"the Docker data root ({root})"
        if _inside(root, path):
            return f"{path}, which holds the Docker data root ({root})"
    if _inside("/etc", path):
        return "the host's configuration (/etc)"
    if _inside(path, "/etc"):
        if any(_inside(path, s) or _inside(s, path) for s in ETC_SECRETS):
            return f"{path}, which holds host secrets or security settings"
        if not read_only:
            return "the host's configuration (/etc), writable"
    for other in extra:
        other = _norm(other)
        if _inside(path, other) or _inside(other, path):
            return f"{path} (listed as sensitive)"
    return None


def bind_severity(source: str, *, read_only: bool) -> str:
    """How bad a sensitive bind is: the socket takes commands even read-only."""
    socket = any(_inside(s, _norm(source)) for s in DOCKER_SOCKETS)
    return HIGH if (socket or not read_only) else MEDIUM


def find_risks(
    *,
    volumes: list[VolumeRow],
    containers: list[ContainerRow],
    mounts: list[MountRow],
    data_root: str = "",
    last_backup: dict[int, datetime] | None = None,
    failed_drills: dict[str, str] | None = None,
    now: datetime,
    config: RiskSettings = RiskSettings(),
) -> list[FindingGroup]:
    """All findings, grouped by kind, worst first. `last_backup` None: no backup feature."""
    container_by_id = {c.id: c for c in containers}
    volume_by_id = {v.id: v for v in volumes}
    findings: list[Finding] = []

    writers: dict[int, set[int]] = defaultdict(set)
    users: dict[int, set[int]] = defaultdict(set)
    for m in mounts:
        container = container_by_id.get(m.container_id)
        if container is None:
            continue
        if m.kind == "volume" and m.volume_id in volume_by_id:
            users[m.volume_id].add(m.container_id)
            if not m.read_only:
                writers[m.volume_id].add(m.container_id)
        elif m.kind == "bind":
            reason = sensitive_reason(
                m.source, read_only=m.read_only, data_root=data_root, extra=config.extra_sensitive_paths
            )
            if reason:
                severity = bind_severity(m.source, read_only=m.read_only)
                mode = "read-only" if m.read_only else "read-write"
                findings.append(Finding(
                    "sensitive-bind", severity, "container", container.name,
                    f"{m.source} is mounted {mode} at {m.destination}: {reason}.", host=container.host,
                ))

    for vid, ids in writers.items():
        if len(ids) > 1:
            names = sorted(container_by_id[c].name for c in ids)
            findings.append(Finding(
                "rw-shared", HIGH, "volume", volume_by_id[vid].name,
                f"Written by {len(names)} containers: {', '.join(names)}.", host=volume_by_id[vid].host,
            ))

    for c in containers:
        if c.size_rw is not None and c.size_rw >= config.writable_layer_bytes:
            findings.append(Finding(
                "writable-layer", MEDIUM, "container", c.name,
                f"{human_size(c.size_rw)} written outside volumes (image {c.image or '?'}, {c.state or '?'}).",
                host=c.host,
            ))

    for v in volumes:
        if v.anonymous and v.size_bytes is not None and v.size_bytes >= config.anonymous_volume_bytes:
            names = sorted(container_by_id[c].name for c in users[v.id])
            where = f"mounted by {', '.join(names)}" if names else "not mounted: the next prune removes it"
            findings.append(Finding(
                "anonymous-data", MEDIUM if names else HIGH, "volume", v.name,
                f"{human_size(v.size_bytes)} of data, {where}.",
                actions=(BACKUP, POLICY) if names else (BACKUP, POLICY, PRUNE), host=v.host,
            ))

    if last_backup is not None:
        for v in volumes:
            at = last_backup.get(v.id)
            if at is None:
                # Unmeasured counts as holding data: the level must not jump up when its size arrives.
                detail, severity = "Never backed up.", LOW if v.size_bytes == 0 else HIGH
            elif now - at > config.backup_max_age:
                days = (now - at).days
                detail, severity = f"Last successful backup {days} day{'s' if days != 1 else ''} ago.", MEDIUM
            else:
                continue
            if v.size_bytes is not None:
                detail += f" {human_size(v.size_bytes)} of data."
            else:
                detail += " Size not measured yet."
            findings.append(Finding("no-backup", severity, "volume", v.name, detail, actions=(BACKUP, POLICY), host=v.host))

    for v in volumes:  # failed_drills: volume name -> what its latest restore drill found
        if failed_drills and v.name in failed_drills:
            findings.append(Finding("drill-failed", HIGH, "volume", v.name, failed_drills[v.name][:300], host=v.host))

    return group_findings(findings)


def group_findings(findings: list[Finding]) -> list[FindingGroup]:
    """Findings grouped by kind, worst group first, worst finding first in each."""
    groups: dict[str, FindingGroup] = {}
    for f in findings:
        groups.setdefault(f.kind, FindingGroup(kind=KINDS[f.kind])).findings.append(f)
    for g in groups.values():
        g.findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.subject))
    kind_order = list(KINDS)
    return sorted(groups.values(), key=lambda g: (SEVERITY_ORDER[g.severity], kind_order.index(g.kind.slug)))


@dataclass(frozen=True)
class RiskCount:
    """One kind's findings counted, for the overview's summary (the risks page lists them)."""

    kind: Kind
    severity: str  # the worst of its findings
    count: int


def count_groups(counts: dict[tuple[str, str], int]) -> list[RiskCount]:
    """(kind slug, severity) -> how many findings, as `group_findings` would order and
    grade the groups: worst group first, then in the order of KINDS."""
    worst: dict[str, str] = {}
    total: dict[str, int] = {}
    for (slug, severity), n in counts.items():
        if n <= 0:
            continue
        total[slug] = total.get(slug, 0) + n
        if slug not in worst or SEVERITY_ORDER[severity] < SEVERITY_ORDER[worst[slug]]:
            worst[slug] = severity
    kind_order = list(KINDS)
    return [RiskCount(KINDS[slug], worst[slug], total[slug])
            for slug in sorted(total, key=lambda s: (SEVERITY_ORDER[worst[s]], kind_order.index(s)))]


def merge_groups(group_lists: list[list[FindingGroup]]) -> list[FindingGroup]:
    """The findings of several hosts (each found with its own engine's data root) as one list of groups."""
    return group_findings([f for groups in group_lists for g in groups for f in g.findings])
