from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts import roles
from accounts.permissions import require
from accounts.services import audit_record
from jobs import kinds
from jobs.models import Job
from jobs.polling import poll_response
from jobs.services import job_request_cancel


def _get_job_for_user(request, job_id: int) -> Job:
    require(request, roles.VIEW_INVENTORY, object_type="job", object_name=str(job_id))
    job = Job.objects.select_related("created_by").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


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
    kind = kinds.get(job.kind)
    if job.created_by_id != request.user.pk:
        require(request, kind.cancel_perm, object_type="job", object_name=str(job.pk))
    if not kind.cancellable:
        messages.error(request, f"A {kind.label} job cannot be cancelled once started.")
    elif job.is_active:
        job_request_cancel(job=job)
        audit_record(action="job_cancel", request=request, object_type="job", object_name=str(job.pk),
                     params={"kind": job.kind, "target": job.target})
        messages.info(request, f"Cancel requested for {kind.label} job #{job.pk}.")
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        return redirect(next_url)
    return redirect("job_detail", job_id=job.pk)
