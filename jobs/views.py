from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts import roles, scoping
from jobs import kinds
from jobs.models import Job
from jobs.polling import poll_response
from jobs import services as job_services
from project.errors import Refused


def _get_job_for_user(request, job_id: int) -> Job:
    """404 when there is no such job or it is another team's (accounts.scoping)."""
    return scoping.require_on(request, roles.VIEW_INVENTORY, Job.objects.select_related("created_by")
                              .filter(pk=job_id).first(), object_type="job", object_name=str(job_id),
                              missing="No such job.")


@require_GET
def job_detail(request, job_id: int):
    """A job's page; with htmx, its polled status region (jobs/polling.py)."""
    job = _get_job_for_user(request, job_id)
    context = {"job": job, "kind": kinds.get(job.kind)}
    if request.htmx:
        return poll_response(request, "jobs/detail.html#status", context, active=job.is_active)
    return render(request, "jobs/detail.html", context)


@require_POST
def job_cancel(request, job_id: int):
    """Cancel, then back to the page the button was on (`next`, its own URL): with htmx
    the redirect is followed and answers that page's status region, so the page's
    poller goes on following the page, never the job's URL."""
    job = _get_job_for_user(request, job_id)
    was_active = job.is_active
    try:
        job_services.job_cancel(request=request, job=job)
    except Refused as exc:
        if was_active:  # a job that just ended needs no word: the page shows its end
            messages.error(request, str(exc))
    else:
        messages.info(request, f"Cancel requested for {kinds.get(job.kind).label} job #{job.pk}.")
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        return redirect(next_url)
    return redirect("job_detail", job_id=job.pk)
