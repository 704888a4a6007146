from django.urls import path

from hosts import views

urlpatterns = [
    path("", views.host_list, name="host_list"),
    path("new/", views.host_edit, name="host_create"),
    path("<slug:name>/edit/", views.host_edit, name="host_edit"),
    path("<slug:name>/remove/", views.host_remove_view, name="host_remove"),
]
