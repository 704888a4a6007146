from django.urls import path, re_path

from api.views import backups, inventory, operations

app_name = "api"

urlpatterns = [
    path("volumes/", inventory.VolumeList.as_view(), name="volume-list"),
    path("volumes/<str:name>/", inventory.VolumeDetail.as_view(), name="volume-detail"),
    path("containers/", inventory.ContainerList.as_view(), name="container-list"),
    path("backups/", backups.BackupList.as_view(), name="backup-list"),
    path("backups/<int:backup_id>/", backups.BackupDetail.as_view(), name="backup-detail"),
    path("backups/<int:backup_id>/download/", backups.BackupDownload.as_view(), name="backup-download"),
    path("backups/<int:backup_id>/files/", backups.BackupFiles.as_view(), name="backup-files"),
    path("backups/<int:backup_id>/verify/", backups.BackupVerify.as_view(), name="backup-verify"),
    path("backups/<int:backup_id>/restore/", backups.RestoreNew.as_view(), name="restore-new"),
    path("backups/<int:backup_id>/restore-in-place/", backups.RestoreInPlace.as_view(), name="restore-in-place"),
    path("restores/", backups.RestoreList.as_view(), name="restore-list"),
    path("restores/<int:restore_id>/", backups.RestoreDetail.as_view(), name="restore-detail"),
    path("policies/", operations.PolicyList.as_view(), name="policy-list"),
    path("policies/<int:policy_id>/", operations.PolicyDetail.as_view(), name="policy-detail"),
    path("policies/<int:policy_id>/run/", operations.PolicyRunNow.as_view(), name="policy-run"),
    path("jobs/", operations.JobList.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", operations.JobDetail.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", operations.JobCancel.as_view(), name="job-cancel"),
    path("audit/", inventory.AuditList.as_view(), name="audit-list"),
    path("hosts/", inventory.HostList.as_view(), name="host-list"),
    # Anything else under /api/v1/ (a mistyped path, an id that is not a number): JSON too.
    re_path(r"^.*$", inventory.NoSuchEndpoint.as_view()),
]
