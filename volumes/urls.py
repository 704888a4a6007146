from django.urls import path

from volumes import views

urlpatterns = [
    path("volumes/", views.volume_list, name="volume_list"),
    path("volumes/<str:name>/", views.volume_detail, name="volume_detail"),
    path("containers/", views.container_list, name="container_list"),
]
