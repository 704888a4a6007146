"""The user's API tokens page: list, create (the token is shown once), revoke."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from api import tokens
from api.models import ApiToken
from project.errors import CargoholdError


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it: a script, a CI job, a machine.")
    days = forms.IntegerField(min_value=1, label="Expires after (days)", initial=settings.API_TOKEN_DEFAULT_DAYS)
    read_only = forms.BooleanField(required=False, label="Read-only (GET only: lists, details, downloads)")

    def clean_days(self):
        days = self.cleaned_data["days"]
        if days > settings.API_TOKEN_MAX_DAYS:
            raise forms.ValidationError(f"At most {settings.API_TOKEN_MAX_DAYS} days (API_TOKEN_MAX_DAYS).")
        return days


@never_cache
@require_http_methods(["GET", "POST"])
def token_list(request):
    """Your tokens. A token acts as you, with your role, so every logged-in user may make them."""
    form = TokenForm(request.POST or None, initial={"days": settings.API_TOKEN_DEFAULT_DAYS})
    created = raw = None
    if request.method == "POST" and form.is_valid():
        try:
            created, raw = tokens.token_create(user=request.user, name=form.cleaned_data["name"],
                                               days=form.cleaned_data["days"],
                                               read_only=form.cleaned_data["read_only"], request=request)
        except CargoholdError as exc:
            form.add_error(None, str(exc))
        else:
            form = TokenForm(initial={"days": settings.API_TOKEN_DEFAULT_DAYS})
    context = {"form": form, "tokens": ApiToken.objects.filter(user=request.user), "created": created, "raw": raw}
    status = 400 if request.method == "POST" and created is None else 200
    return render(request, "api/tokens.html", context, status=status)


@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)  # only your own: 404 for others'
    try:
        tokens.token_revoke(token=token, user=request.user, request=request)
        messages.success(request, f"Revoked the token {token.name}: requests with it now answer 401.")
    except CargoholdError as exc:
        messages.error(request, str(exc))
    return redirect("api_tokens")
