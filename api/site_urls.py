"""Mounted at the site root by project/urls.py: the API, its schema and docs, the tokens page."""

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api import token_views

urlpatterns = [
    path("api/v1/", include("api.urls")),
    # The schema answers tokens too (401 JSON, not the login page); the docs page is a page.
    path("api/schema/", login_not_required(SpectacularAPIView.as_view()), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("accounts/tokens/", token_views.token_list, name="api_tokens"),
    path("accounts/tokens/<int:token_id>/revoke/", token_views.token_revoke, name="api_token_revoke"),
]
