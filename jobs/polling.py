"""One polling convention for every page (README "Live pages").

A page polls ITS OWN status region: one `{% partialdef %}` per page, carrying
`{% poll_attrs %}`; the view answers an htmx request with `page.html#name` through
`poll_response`, which says 286 (htmx stops polling) once nothing on the page is active.
Buttons that start a follow-up job (verify, roll back, cancel...) post with htmx and
redirect back to the page, so the answer is the page's own region again, now following
that job. Lists never stop (things start elsewhere: a schedule, the CLI, another user):
they poll fast while something on them is active and slowly otherwise.
"""

from django.shortcuts import render
from django_htmx.http import HttpResponseStopPolling

from jobs.models import Job

# A page with a queued or running job re-reads its region this often (progress is
# written about once a second; every 2 s keeps bars moving at half the requests).
ACTIVE_EVERY = "2s"
# A list with nothing active: slow enough not to poll every few seconds forever, quick
# enough that a volume made with the docker CLI shows up within about 15 s.
IDLE_EVERY = "15s"


def poll_response(request, template: str, context: dict, *, active: bool):
    """A page's status region for its poll; 286 when nothing on it is active any more
    (the region is still swapped in: it shows the end, and has no polling attributes)."""
    response = render(request, template, {**context, "poll_active": active})
    if not active:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def job_latest(*, kinds: tuple[str, ...] | list[str], **params) -> Job | None:
    """The newest job of one of `kinds` whose params match (`backup=7`): a page's
    follow-up job, e.g. the last verification of a backup."""
    lookups = {f"params__{key}": value for key, value in params.items()}
    return Job.objects.select_related("created_by").filter(kind__in=kinds, **lookups).order_by("-created_at", "-id").first()


def jobs_active_on(*, targets) -> bool:
    """Whether a job is queued or running on one of these targets (a list's volumes)."""
    targets = [t for t in targets if t]
    return bool(targets) and Job.objects.filter(status__in=Job.ACTIVE, target__in=targets).exists()
