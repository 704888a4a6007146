from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views, views_teams

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("lockouts/", views.lockout_list, name="lockouts"),
    path("lockouts/lift/", views.lockout_lift, name="lockout_lift"),
    path("teams/", views_teams.team_list, name="team_list"),
    path("teams/<int:team_id>/", views_teams.team_detail, name="team_detail"),
    path("teams/<int:team_id>/delete/", views_teams.team_delete, name="team_delete"),
    path("teams/preview/", views_teams.team_rule_preview, name="team_rule_preview"),
    path("teams/switch/", views_teams.team_switch, name="team_switch"),
]

# Mounted at the site root by project/urls.py: the trail lives at /audit/.
audit_urlpatterns = [
    path("audit/", views.audit_list, name="audit"),
]
