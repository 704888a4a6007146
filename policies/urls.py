from django.urls import path

from policies import views

urlpatterns = [
    path("policies/", views.policy_list, name="policy_list"),
    path("policies/new/", views.policy_create, name="policy_create"),
    path("policies/preview/", views.policy_preview, name="policy_preview"),
    path("policies/notifications/", views.notification_settings, name="notification_settings"),
    path("policies/notifications/test/", views.notification_test, name="notification_test"),
    path("policies/<int:policy_id>/", views.policy_detail, name="policy_detail"),
    path("policies/<int:policy_id>/edit/", views.policy_edit, name="policy_edit"),
    path("policies/<int:policy_id>/run/", views.policy_run_now, name="policy_run_now"),
    path("policies/<int:policy_id>/enable/", views.policy_enable, name="policy_enable"),
    path("policies/<int:policy_id>/delete/", views.policy_delete, name="policy_delete"),
]
