"""Beat's periodic engine work for every host: the schedule names one task; this sends it
to each host's own queue, where the worker beside that engine runs it."""

from __future__ import annotations

from celery import current_app, shared_task

from hosts import refs


@shared_task(ignore_result=True)
def on_every_host(task_name: str, expires: float | None = None) -> list[str]:
    """Send `task_name` to the default host and to every other host whose worker is
    online (an offline host's queue would only pile up; its worker syncs and recovers
    when it starts)."""
    from hosts.selectors import hosts_to_reach

    sent = []
    for host in hosts_to_reach():
        current_app.send_task(task_name, queue=refs.queue_for(host.name), expires=expires)
        sent.append(host.name)
    return sent
