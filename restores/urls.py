from django.urls import path

from restores import views

urlpatterns = [
    path("backups/import/", views.backup_import, name="backup_import"),
    path("backups/import/<int:backup_id>/", views.import_detail, name="import_detail"),
    path("backups/<int:backup_id>/restore/", views.restore_new, name="restore_new"),
    path("backups/<int:backup_id>/restore-in-place/", views.restore_in_place, name="restore_in_place"),
    path("restores/", views.restore_list, name="restore_list"),
    path("restores/<int:restore_id>/", views.restore_detail, name="restore_detail"),
    path("restores/<int:restore_id>/remove-partial/", views.restore_remove_partial, name="restore_remove_partial"),
    path("restores/<int:restore_id>/roll-back/", views.restore_roll_back, name="restore_roll_back"),
    path("restores/<int:restore_id>/dismiss/", views.restore_dismiss, name="restore_dismiss"),
]
