"""Filled by the repositories page (Admin)."""

urlpatterns: list = []
