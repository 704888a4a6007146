"""Who is acting right now, for audit rows written far from any view (model signals).

The middleware names the request; a management command names itself with `acting_as`;
anything else is a manage.py command run by hand (`cli:<login>`) or Cargohold itself.
"""

import getpass
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Actor:
    user: object = None  # a user account, when one is known
    name: str = ""  # otherwise a name such as cli:root
    request: object = None  # the request, for the user and the client's address


_current: ContextVar[Actor | None] = ContextVar("cargohold_actor", default=None)


def cli_actor_name() -> str:
    """cli:<login name>: whoever runs manage.py on the host already has the database."""
    try:
        login = getpass.getuser()
    except Exception:
        login = "unknown"
    return f"cli:{login}"


@contextmanager
def acting_as(*, user=None, name: str = "", request=None):
    token = _current.set(Actor(user=user, name=name, request=request))
    try:
        yield
    finally:
        _current.reset(token)


def current_actor() -> Actor:
    actor = _current.get()
    if actor is not None:
        return actor
    if Path(sys.argv[0] if sys.argv else "").name in {"manage.py", "django-admin", "django-admin.py"}:
        return Actor(name=cli_actor_name())
    return Actor(name="system")


def audit_kwargs(actor: Actor) -> dict:
    """The actor as `audit_record` keyword arguments."""
    if actor.request is not None:
        return {"request": actor.request, "actor": actor.user}
    return {"actor": actor.user, "actor_name": actor.name}
