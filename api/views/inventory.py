"""Volumes, containers and the audit trail: reads of the mirror and the trail."""

from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts import roles
from accounts import selectors as audit_selectors
from accounts.models import AuditEvent
from api import permissions, serializers
from api.views.base import ApiView, Open, query
from hosts.models import Host
from hosts.selectors import host_param
from policies.selectors import protection_map
from volumes import selectors
from volumes.models import Volume


@extend_schema(tags=["volumes"], parameters=[
    query("q", "Text in the name, labels or driver."),
    query("usage", "Used by a container or not.", enum=["used", "unused"]),
    query("kind", "Named or anonymous volumes.", enum=["named", "anonymous"]),
    query("sort", "Order.", enum=list(selectors.VOLUME_SORTS)),
    query("gone", "1: include volumes no longer on the engine.", enum=["1"]),
    query("host", "Only the volumes of this Docker host."),
])
class VolumeList(Open, generics.ListAPIView):
    """The volumes the mirror knows (the engine as of the last sync)."""

    serializer_class = serializers.VolumeSerializer

    def get_queryset(self):
        permissions.require_anywhere(self.request, roles.VIEW_INVENTORY, object_type="volume", object_name="(list)")
        filters = selectors.VolumeFilters.from_query(self.request.query_params)
        return selectors.volume_list(filters=filters, who=self.request.user)  # all the user's teams


@extend_schema(tags=["volumes"], responses=serializers.VolumeDetailSerializer)
class VolumeDetail(ApiView):
    """One volume, its mounts and its protection state."""

    def get(self, request, name: str):
        volume = permissions.get_volume(request, name)
        volume.visible_mounts = selectors.volume_mounts(volume=volume)
        context = {"protection": protection_map(names=[volume.name]).get(volume.name)}
        return Response(serializers.VolumeDetailSerializer(volume, context=context).data)


@extend_schema(tags=["containers"], parameters=[
    query("q", "Text in the name, image or Compose project."),
    query("project", "A Compose project."),
    query("host", "Only the containers of this Docker host."),
])
class ContainerList(Open, generics.ListAPIView):
    """Containers that mount volumes you can see, with those mounts."""

    serializer_class = serializers.ContainerSerializer

    def get_queryset(self):
        request = self.request
        permissions.require_anywhere(request, roles.VIEW_INVENTORY, object_type="container", object_name="(list)")
        return selectors.container_list(q=request.query_params.get("q", "").strip()[:200],
                                        project=request.query_params.get("project", "")[:255],
                                        host=host_param(request.query_params), who=request.user)


@extend_schema(tags=["audit"], parameters=[
    query("user", "Part of the actor's name."),
    query("action", "An action (backup_start, restore_start, permission_denied...)."),
    query("object", "Part of the object's name."),
    query("result", "The result.", enum=list(AuditEvent.Result.values)),
    query("from", "First day (YYYY-MM-DD, UTC)."),
    query("to", "Last day (YYYY-MM-DD, UTC)."),
    query("host", "Events about this Docker host, its volumes and their backups and restores."),
])
class AuditList(Open, generics.ListAPIView):
    """The audit trail, newest first (Admins; a team's Admin: the team's objects)."""

    serializer_class = serializers.AuditEventSerializer

    def get_queryset(self):
        permissions.require_anywhere(self.request, roles.MANAGE_USERS, object_type="audit", object_name="audit trail")
        filters = audit_selectors.AuditFilters.from_query(self.request.query_params)
        return audit_selectors.audit_events(filters=filters, who=self.request.user)


@extend_schema(tags=["hosts"])
class HostList(Open, generics.ListAPIView):
    """The Docker hosts: each one's worker online or offline since when, its engine's version
    and how many of its volumes you can see. How a worker reaches its engine (URL, TLS) is
    not shown here (an Admin sees it on /hosts/)."""

    serializer_class = serializers.HostSerializer

    def get_queryset(self):
        permissions.require_anywhere(self.request, roles.VIEW_INVENTORY, object_type="host", object_name="(list)")
        return Host.objects.select_related("engine_status").order_by("name")

    def get_serializer_context(self):
        counts = (permissions.visible(self.request, Volume).present().order_by().values("host_id")
                  .annotate(n=Count("id")).values_list("host_id", "n"))
        return {**super().get_serializer_context(), "volume_counts": dict(counts)}


@extend_schema(exclude=True)
class NoSuchEndpoint(ApiView):
    permission_classes = []
    authentication_classes = []

    def initial(self, request, *args, **kwargs):
        raise NotFound(f"No API endpoint at {request.path}: the operations are listed at /api/docs/.")
