"""Backups: list, start, detail, download, verify, delete; restores from a backup."""

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts import roles
from api import permissions, serializers
from api.pagination import Pagination
from api.views.base import ApiView, Open, accepted, query
from hosts.selectors import host_param, ref_host_q
from backups import files_selectors, selectors, services
from backups import views as backup_pages
from restores import services as restore_services
from restores.models import Restore


@extend_schema(tags=["backups"])
class BackupList(Open, generics.ListCreateAPIView):
    """GET: the backups, newest first. POST: back up a volume now (Operators): answers the
    queued backup and its job; follow the job at `job.url`."""

    serializer_class = serializers.BackupSerializer

    @extend_schema(parameters=[
        query("volume", "The volume's name."),
        query("status", "The backup's status.", enum=serializers.STATUSES),
        query("from", "Created on or after this day (YYYY-MM-DD, UTC)."),
        query("to", "Created on or before this day (YYYY-MM-DD, UTC)."),
        query("host", "Only backups of this Docker host's volumes."),
    ])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        permissions.require_anywhere(self.request, roles.VIEW_INVENTORY, object_type="backup", object_name="(list)")
        filters = selectors.BackupFilters.from_query(self.request.query_params)
        return selectors.backup_list(filters=filters, who=self.request.user)  # all the user's teams

    @extend_schema(request=serializers.BackupStartSerializer, responses={202: serializers.BackupStartedSerializer})
    def post(self, request):
        data = _valid(serializers.BackupStartSerializer, request)
        volume = permissions.get_volume(request, data["volume"], roles.RUN_BACKUP)
        backup = services.backup_start(volume_name=volume.name, user=request.user, request=request,
                                       stop_containers=data["stop_containers"], compression=data["compression"],
                                       repository=data.get("repository") or None)
        return accepted({"backup": serializers.BackupSerializer(backup).data,
                         "job": serializers.JobSerializer(backup.job).data})


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema(tags=["backups"])
class BackupDetail(ApiView):
    @extend_schema(responses=serializers.BackupDetailSerializer)
    def get(self, request, backup_id: int):
        """One backup, with its job and manifest."""
        return Response(serializers.BackupDetailSerializer(permissions.get_backup(request, backup_id)).data)

    @extend_schema(responses={202: serializers.JobSerializer})
    def delete(self, request, backup_id: int):
        """Delete the backup's archive and record (Admins): a worker does it; follow the job."""
        backup = permissions.get_backup(request, backup_id, backup_pages.DELETE_PERM)
        return accepted(serializers.JobSerializer(services.backup_delete_start(backup=backup, user=request.user)).data)


@extend_schema(tags=["backups"], responses={
    (200, "application/zstd"): OpenApiResponse(OpenApiTypes.BINARY, description="The archive (.tar.zst)."),
    (200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY, description="The archive (.tar.gz)."),
})
class BackupDownload(ApiView):
    """The archive itself, streamed (Operators); `X-Checksum-SHA256` carries its checksum."""

    def get(self, request, backup_id: int):
        backup = permissions.get_backup(request, backup_id, roles.DOWNLOAD_ARCHIVE)
        return backup_pages.download_response(request, backup)


@extend_schema(tags=["backups"], responses=serializers.BackupFilesSerializer, parameters=[
    query("path", "The folder to list, relative to the volume's root (\"\" or absent: the root)."),
    query("q", "Search the whole backup for names holding this (case-insensitive; at most 500 hits)."),
    query("page", "The page (of `page_size` entries, 50 unless said).", type=int),
    query("page_size", "Entries per page, at most 500.", type=int),
])
class BackupFiles(ApiView):
    """The backup's file index: a folder's entries (folders first, then by name), or the
    entries whose name holds `q`. 404 for a path that is no folder of the backup."""

    def get(self, request, backup_id: int):
        backup = permissions.get_backup(request, backup_id)
        query_text = files_selectors.clean_query(request.query_params.get("q"))
        try:
            path = files_selectors.clean_path(request.query_params.get("path"))
        except files_selectors.BadPath as exc:
            raise ValidationError({"path": [str(exc)]}) from None
        listing = files_selectors.backup_listing(backup=backup, path=path, query=query_text,
                                                 page=request.query_params.get("page"), per_page=_page_size(request))
        if listing.missing:
            raise Http404(f"{path} is not a folder in this backup.")
        links = {"next": None, "previous": None}
        if listing.page is not None:
            url = request.build_absolute_uri()
            if listing.page.has_next:
                links["next"] = replace_query_param(url, "page", listing.page.page + 1)
            if listing.page.page > 1:
                links["previous"] = replace_query_param(url, "page", listing.page.page - 1)
        return Response({
            "path": path, "query": query_text, "indexed": listing.indexed, "count": listing.count, **links,
            "results": serializers.BackupEntrySerializer(listing.rows, many=True).data,
        })


def _page_size(request) -> int:
    """?page_size= as the API's lists read it (at most 500)."""
    return min(files_selectors.page_number(request.query_params.get("page_size") or Pagination.page_size),
               Pagination.max_page_size)


@extend_schema(tags=["backups"], request=None, responses={202: serializers.JobSerializer})
class BackupVerify(ApiView):
    """Re-read the stored archive and check it against its checksum (Operators)."""

    def post(self, request, backup_id: int):
        backup = permissions.get_backup(request, backup_id, roles.RUN_BACKUP)
        return accepted(serializers.JobSerializer(services.backup_verify_start(backup=backup, user=request.user)).data)


@extend_schema(tags=["restores"], request=serializers.RestoreNewSerializer,
               responses={202: serializers.RestoreSerializer})
class RestoreNew(ApiView):
    """Restore the backup into a new volume (Operators; driver, options and devices: Admins)."""

    def post(self, request, backup_id: int):
        backup = permissions.get_backup(request, backup_id, roles.RESTORE_NEW)
        data = _valid(serializers.RestoreNewSerializer, request)
        restore = restore_services.restore_new_start(
            backup=backup, volume_name=data["volume_name"], driver=data["driver"], options=data["options"],
            labels=data["labels"], allow_devices=data["allow_devices"], user=request.user)
        return accepted(serializers.RestoreSerializer(restore).data)


@extend_schema(tags=["restores"], request=serializers.RestoreInPlaceSerializer,
               responses={202: serializers.RestoreSerializer})
class RestoreInPlace(ApiView):
    """Restore the backup over its own volume (Admins), confirmed by its name. A safety
    backup is taken first; the volume's containers are stopped meanwhile."""

    def post(self, request, backup_id: int):
        backup = permissions.get_backup(request, backup_id, roles.RESTORE_IN_PLACE)
        data = _valid(serializers.RestoreInPlaceSerializer, request)
        restore = restore_services.restore_in_place_start(
            backup=backup, confirm_name=data["confirm_name"], allow_devices=data["allow_devices"],
            confirm_imported=data["confirm_imported"], user=request.user)
        return accepted(serializers.RestoreSerializer(restore).data)


@extend_schema(tags=["restores"], parameters=[query("volume", "The target volume's name."),
                                              query("host", "Only restores into this Docker host's volumes.")])
class RestoreList(Open, generics.ListAPIView):
    serializer_class = serializers.RestoreSerializer

    def get_queryset(self):
        permissions.require_anywhere(self.request, roles.VIEW_INVENTORY, object_type="restore", object_name="(list)")
        qs = permissions.visible(self.request, Restore).select_related("job__created_by", "backup")
        volume = self.request.query_params.get("volume", "")[:320]
        if host := host_param(self.request.query_params):
            qs = qs.filter(ref_host_q("volume_name", host))
        return qs.filter(volume_name=volume) if volume else qs


@extend_schema(tags=["restores"], responses=serializers.RestoreSerializer)
class RestoreDetail(ApiView):
    def get(self, request, restore_id: int):
        return Response(serializers.RestoreSerializer(permissions.get_restore(request, restore_id)).data)
