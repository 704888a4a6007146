from django.urls import path

from backups import file_views, views

urlpatterns = [
    path("backups/", views.backup_list, name="backup_list"),
    path("backups/bulk/", views.backup_bulk, name="backup_bulk"),
    path("backups/<int:backup_id>/", views.backup_detail, name="backup_detail"),
    path("backups/<int:backup_id>/download/", views.backup_download, name="backup_download"),
    path("backups/<int:backup_id>/verify/", views.backup_verify, name="backup_verify"),
    path("backups/<int:backup_id>/delete/", views.backup_delete, name="backup_delete"),
    path("volumes/<str:name>/backup/", views.volume_backup, name="volume_backup"),
    path("backups/<int:backup_id>/files/", file_views.backup_files, name="backup_files"),
    path("backups/<int:backup_id>/files/download/", file_views.backup_file_download, name="backup_file_download"),
    path("backups/<int:backup_id>/files/extract/", file_views.backup_extract, name="backup_extract"),
    path("backups/<int:backup_id>/files/extract/<int:job_id>/", file_views.backup_extract_detail,
         name="backup_extract_detail"),
    path("backups/<int:backup_id>/files/extract/<int:job_id>/download/", file_views.backup_extract_download,
         name="backup_extract_download"),
]
