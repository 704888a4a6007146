from django.urls import path

from insights import views

urlpatterns = [
    path("graph/", views.graph, name="graph"),
    path("risks/", views.risks, name="risks"),
    path("insights/volumes/<str:name>/usage/", views.volume_usage, name="volume_usage"),
]
