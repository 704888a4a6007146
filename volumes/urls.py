from django.urls import path

from volumes import views

urlpatterns = [
    path("volumes/", views.volume_list, name="volume_list"),
    # Before volumes/<name>/: these two words are lifecycle pages, not volume names.
    path("volumes/new/", views.volume_create, name="volume_create"),
    path("volumes/prune/", views.volume_prune, name="volume_prune"),
    path("volumes/jobs/<int:job_id>/", views.volume_job, name="volume_job"),
    path("volumes/<str:name>/remove/", views.volume_remove, name="volume_remove"),
    path("volumes/<str:name>/", views.volume_detail, name="volume_detail"),
    path("containers/", views.container_list, name="container_list"),
]
