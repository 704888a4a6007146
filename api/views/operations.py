"""Policies (list, detail, run now) and jobs (follow, cancel)."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response

from accounts import roles
from api import permissions, serializers
from api.views.base import ApiView, Open, accepted, query
from hosts.selectors import host_param
from jobs.models import Job
from jobs.services import job_cancel
from policies import selectors, services
from policies.models import BackupPolicy, PolicyRun


@extend_schema(tags=["policies"])
class PolicyList(Open, generics.ListAPIView):
    serializer_class = serializers.PolicySerializer

    def get_queryset(self):
        permissions.require_anywhere(self.request, roles.VIEW_INVENTORY, object_type="policy", object_name="(list)")
        return permissions.visible(self.request, BackupPolicy).order_by("name")


@extend_schema(tags=["policies"], responses=serializers.PolicyDetailSerializer)
class PolicyDetail(ApiView):
    """One policy, its next due times and its latest runs."""

    def get(self, request, policy_id: int):
        policy = permissions.get_policy(request, policy_id)
        policy.api_next_runs = selectors.policy_next_runs(policy=policy)
        context = {"runs": selectors.policy_runs(policy=policy)}
        return Response(serializers.PolicyDetailSerializer(policy, context=context).data)


@extend_schema(tags=["policies"], request=None, responses={202: serializers.PolicyRunStartedSerializer})
class PolicyRunNow(ApiView):
    """Run the policy now, outside its schedule (Admins): one backup per selected volume."""

    def post(self, request, policy_id: int):
        policy = permissions.get_policy(request, policy_id, roles.MANAGE_POLICIES)
        runs = services.policy_run_now(policy=policy, user=request.user, request=request)
        started = sum(1 for r in runs if r.status in PolicyRun.ACTIVE)
        return accepted({"started": started, "runs": serializers.PolicyRunSerializer(runs, many=True).data})


@extend_schema(tags=["jobs"], parameters=[
    query("status", "The job's status.", enum=serializers.STATUSES),
    query("kind", "The job's kind (backup, restore_new...)."),
    query("host", "Only the jobs run by this Docker host's worker."),
])
class JobList(Open, generics.ListAPIView):
    """The jobs you can see, newest first."""

    serializer_class = serializers.JobSerializer

    def get_queryset(self):
        request = self.request
        permissions.require_anywhere(request, roles.VIEW_INVENTORY, object_type="job", object_name="(list)")
        qs = permissions.visible(request, Job).select_related("created_by").order_by("-created_at", "-id")
        status = request.query_params.get("status", "")
        if status in serializers.STATUSES:
            qs = qs.filter(status=status)
        if kind := request.query_params.get("kind", "")[:64]:
            qs = qs.filter(kind=kind)
        if host := host_param(request.query_params):
            qs = qs.filter(host=host)
        return qs


@extend_schema(tags=["jobs"], responses=serializers.JobSerializer)
class JobDetail(ApiView):
    """A job: poll it to follow a backup, restore or deletion (status, progress, error)."""

    def get(self, request, job_id: int):
        return Response(serializers.JobSerializer(permissions.get_job(request, job_id)).data)


@extend_schema(tags=["jobs"], request=None, responses=serializers.JobSerializer)
class JobCancel(ApiView):
    """Cancel a queued job at once, or ask a running one to stop (its starter, or the kind's role)."""

    def post(self, request, job_id: int):
        job = job_cancel(request=request, job=permissions.get_job(request, job_id))
        return Response(serializers.JobSerializer(job).data)
