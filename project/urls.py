from django.contrib import admin
from django.urls import include, path

from accounts.urls import audit_urlpatterns

from insights import views as insights_views

# 403 and 404 are pages of the dashboard: its navigation, and the server's reason.
handler403 = "project.errorpages.forbidden"
handler404 = "project.errorpages.not_found"

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
    path("", include("drills.urls")),
    path("repositories/", include("repositories.urls")),  # where backups go (Admins)  # a policy's hooks and restore drills (Admins)
    path("", include("api.site_urls")),  # /api/v1/, /api/schema/, /api/docs/, /accounts/tokens/
    path("", include("metrics.urls")),  # /metrics
    path("hosts/", include("hosts.urls")),  # the Docker hosts and their workers
    path("", include("hosts.urls_transfers")),  # /volumes/<ref>/transfer/, /transfers/<id>/
]
