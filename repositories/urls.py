from django.urls import path

from repositories import views

urlpatterns = [
    path("", views.repository_list, name="repository_list"),
    path("new/", views.repository_create, name="repository_create"),
    path("<slug:name>/edit/", views.repository_edit, name="repository_edit"),
    path("<slug:name>/delete/", views.repository_delete, name="repository_delete"),
    path("<slug:name>/default/", views.repository_make_default, name="repository_make_default"),
    path("<slug:name>/check/", views.repository_check, name="repository_check"),
]
