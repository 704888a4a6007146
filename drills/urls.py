from django.urls import path

from drills import views

urlpatterns = [
    path("policies/<int:policy_id>/hooks/", views.policy_hooks, name="policy_hooks"),
    path("volumes/<str:name>/dumps/", views.volume_dump_choose, name="volume_dump_choose"),
    path("backups/<int:backup_id>/dumps/load/", views.backup_dump_load, name="backup_dump_load"),
]
