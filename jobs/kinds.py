"""The kinds of job: what each is called, what the worker performs for it, what happens
once it ended, and who may cancel it. Apps register their kinds in AppConfig.ready()."""

from collections.abc import Callable
from dataclasses import dataclass

from accounts import roles


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    # Worker side: perform(ctx) -> result dict or None; raises to fail (CargoholdError's
    # text is the job's error), JobCancelled when asked to stop.
    perform: Callable | None = None
    # on_end(job): called exactly once after the job ended, whatever ended it (its
    # perform, a cancel while queued, a dead worker found by the sweep). Worker side.
    on_end: Callable | None = None
    cancel_perm: str = roles.MANAGE_USERS
    cancellable: bool = True
    # Hard time limit in seconds (the soft one, which raises in perform, is 60 s before);
    # None: none (a backup of a large volume takes as long as it takes).
    time_limit: int | None = None
    # What progress_done / progress_total count, as the job card shows them: "bytes" (in
    # binary units) or a plural noun ("volumes": "3 of 10 volumes").
    progress_unit: str = "bytes"


_kinds: dict[str, JobKind] = {}


def register(name: str, label: str, *, perform: Callable | None = None, on_end: Callable | None = None,
             cancel_perm: str = roles.MANAGE_USERS, cancellable: bool = True,
             time_limit: int | None = None, progress_unit: str = "bytes") -> JobKind:
    kind = JobKind(name=name, label=label, perform=perform, on_end=on_end, cancel_perm=cancel_perm,
                   cancellable=cancellable, time_limit=time_limit, progress_unit=progress_unit)
    _kinds[name] = kind
    return kind


def get(name: str) -> JobKind:
    return _kinds.get(name) or JobKind(name=name, label=name.replace("_", " "))


def registered() -> list[JobKind]:
    return list(_kinds.values())
