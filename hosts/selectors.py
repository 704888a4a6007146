"""Reads of the hosts for pages, the banner, the API and beat's fan-out."""

from __future__ import annotations

from hosts import refs
from hosts.models import Host


def hosts_all() -> list[Host]:
    return list(Host.objects.select_related("engine_status").order_by("name"))


def hosts_to_reach() -> list[Host]:
    """The default host always; any other while its worker is online."""
    return [h for h in Host.objects.order_by("name") if h.name == refs.default_host_name() or h.online]


def hosts_offline() -> list[Host]:
    """The hosts other than the default whose worker is not heard from (the banner). The
    default host's own problems are the engine banner's, as before."""
    return [h for h in Host.objects.exclude(name=refs.default_host_name()).order_by("name") if not h.online]


def host_names() -> list[str]:
    """Every host's name; the default host always among them (its row is made again if it
    went missing: every install has it)."""
    names = list(Host.objects.order_by("name").values_list("name", flat=True))
    if refs.default_host_name() not in names:
        from hosts.models import default_host

        default_host()
        names = sorted([*names, refs.default_host_name()])
    return names


def many_hosts() -> bool:
    """More than the default host: pages show host columns and filters only then."""
    return Host.objects.exclude(name=refs.default_host_name()).exists()


def hosts_with_counts() -> list[Host]:
    """Every host with its present volumes and containers counted: one grouped query each
    (two counts joined in one query would count the volumes x containers product: 35 s
    with 10 hosts of 1,000 volumes and 300 containers, bench/many_hosts.py)."""
    from django.db.models import Count

    from hosts.models import default_host

    default_host()  # listed even before anything else made its row

    from volumes.models import Container, Volume

    def per_host(model) -> dict[int, int]:
        return dict(model.objects.filter(gone_since__isnull=True).values("host_id")
                    .annotate(n=Count("pk")).values_list("host_id", "n").order_by())

    volumes, containers = per_host(Volume), per_host(Container)
    hosts = list(Host.objects.select_related("engine_status").order_by("name"))
    for host in hosts:
        host.volumes_count = volumes.get(host.pk, 0)
        host.containers_count = containers.get(host.pk, 0)
    return hosts


def host_param(params) -> str:
    """The `?host=` filter of a list page: a well-formed host name, else "" (every host)."""
    value = (params.get("host") or "").strip()
    return value if refs.HOST_NAME.match(value) else ""


def ref_host_q(field: str, host_name: str):
    """A filter on a field holding volume references (hosts.refs): the volumes of `host_name`.
    The default host's references have no prefix; every other host's start with `name:`."""
    from django.db.models import Q

    if not host_name:
        return Q()
    if host_name == refs.default_host_name():
        return ~Q(**{f"{field}__contains": refs.SEP})
    return Q(**{f"{field}__startswith": f"{host_name}{refs.SEP}"})


def host_counts(host: Host) -> dict:
    """What removing `host` forgets (its mirror) and what stays (its backups)."""
    from backups.models import Backup
    from volumes.models import Container, Volume

    return {
        "volumes_count": Volume.objects.filter(host=host).count(),
        "containers_count": Container.objects.filter(host=host).count(),
        "backups_count": Backup.objects.filter(ref_host_q("volume_name", host.name)).count(),
    }
