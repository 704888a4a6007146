"""API tokens: create (the token is returned once), revoke, and look one up.

A token is 32 random bytes (secrets.token_urlsafe), so it cannot be guessed or brute-forced
from its hash: a plain SHA-256 is enough to make a stolen database useless. PBKDF2 and
friends are slow on purpose to protect *low-entropy* passwords, and would cost every API
request that slowness for no gain. The hash is the lookup key, so no comparison of secrets
happens in Python (nothing to time).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from api.models import ApiToken
from project.errors import Refused

TOKEN_PREFIX = "chk_"
LAST_USED_EVERY = timedelta(minutes=1)  # at most one write per token per minute


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user, name: str, days: int | None = None, read_only: bool = False,
                 request=None) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns (the row, the token). The token is never stored:
    the caller shows it once. Audited (without the token)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise Refused("Give the token a name of 1 to 100 characters (what script or machine uses it).")
    days = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise Refused(f"A token lives 1 to {settings.API_TOKEN_MAX_DAYS} days (API_TOKEN_MAX_DAYS).")
    if ApiToken.objects.usable().filter(user=user, name=name).exists():
        raise Refused(f"You already have a token named {name!r}: choose another name or revoke it first.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=raw[:12], digest=token_digest(raw), read_only=read_only,
            expires_at=timezone.now() + timedelta(days=days),
        )
        audit_record(action="api_token_create", actor=user, request=request, object_type="api_token",
                     object_name=f"{user.get_username()}: {name}",
                     params={"token": token.pk, "prefix": token.prefix, "read_only": read_only,
                             "expires_at": token.expires_at.isoformat()})
    return token, raw


def token_revoke(*, token: ApiToken, user, request=None) -> ApiToken:
    """Revoke a token at once (the next request with it answers 401). Audited."""
    if token.revoked_at is not None:
        raise Refused(f"The token {token.name!r} is already revoked.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(action="api_token_revoke", actor=user, request=request, object_type="api_token",
                 object_name=f"{token.user.get_username()}: {token.name}",
                 params={"token": token.pk, "prefix": token.prefix})
    return token


def token_lookup(raw: str) -> ApiToken | None:
    """The token row for a presented token (usable or not: the caller says why not)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    return ApiToken.objects.select_related("user").filter(digest=token_digest(raw)).first()


def token_touch(token: ApiToken) -> None:
    """Record that the token was used (shown on the tokens page), at most once a minute."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
