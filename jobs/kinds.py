"""What each kind of job is called and who may cancel it. Apps register their kinds."""

from dataclasses import dataclass

from accounts import roles


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    cancel_perm: str = roles.MANAGE_USERS
    cancellable: bool = True


_kinds: dict[str, JobKind] = {}


def register(name: str, label: str, *, cancel_perm: str = roles.MANAGE_USERS, cancellable: bool = True) -> JobKind:
    kind = JobKind(name=name, label=label, cancel_perm=cancel_perm, cancellable=cancellable)
    _kinds[name] = kind
    return kind


def get(name: str) -> JobKind:
    return _kinds.get(name) or JobKind(name=name, label=name.replace("_", " "))
