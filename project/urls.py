from django.contrib import admin
from django.urls import include, path

from volumes import views as volume_views

urlpatterns = [
    path("", volume_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include("volumes.urls")),
    path("", include("jobs.urls")),
    path("", include("backups.urls")),
]
