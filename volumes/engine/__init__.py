"""The engine adapter: the only package that imports the docker SDK.

It returns our own dataclasses and turns docker's exceptions into ours, with messages
a person can act on. Only worker-side code (Celery tasks, the event watcher, management
commands) calls it; the web server never does. One module per concern: `client` (one SDK
client per process, for the host its worker serves), `core` (errors, dataclasses,
inventory, volume and container calls), `mounts` (who mounts a
volume, from the engine's events), `helpers` (short-lived helper containers that read and
write volumes), `execs` (commands in running containers, scratch containers). Callers use
`from volumes import engine` and `engine.<name>`.
"""

from volumes.engine.core import *  # noqa: F403
from volumes.engine.core import _short, _translate  # noqa: F401  (volumes.datahelper, same app)
from volumes.engine.execs import *  # noqa: F403
from volumes.engine.helpers import *  # noqa: F403
from volumes.engine.mounts import *  # noqa: F403
