from django.contrib import admin
from django.urls import include, path

from accounts.urls import audit_urlpatterns

from insights import views as insights_views

urlpatterns = [
    path("", insights_views.overview, name="home"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include(audit_urlpatterns)),
    path("", include("volumes.urls")),
    path("", include("jobs.urls")),
    path("", include("backups.urls")),
    path("", include("restores.urls")),
    path("", include("insights.urls")),
    path("", include("policies.urls")),
]
