from django.urls import path

from backups import views

urlpatterns = [
    path("backups/", views.backup_list, name="backup_list"),
    path("backups/bulk/", views.backup_bulk, name="backup_bulk"),
    path("backups/<int:backup_id>/", views.backup_detail, name="backup_detail"),
    path("backups/<int:backup_id>/download/", views.backup_download, name="backup_download"),
    path("backups/<int:backup_id>/verify/", views.backup_verify, name="backup_verify"),
    path("backups/<int:backup_id>/delete/", views.backup_delete, name="backup_delete"),
    path("volumes/<str:name>/backup/", views.volume_backup, name="volume_backup"),
]
