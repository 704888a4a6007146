"""DRF authentication by API token: `Authorization: Bearer chk_…`."""

from django.utils.formats import date_format
from rest_framework import authentication, exceptions

from api import tokens

TOKENS_PAGE = "/accounts/tokens/"


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """A usable token authenticates as its user; `request.auth` is the ApiToken row (the
    ApiAccess permission reads `read_only` from it). No Authorization header: the next
    class (the session, for the browsable API) gets its turn."""

    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Send the token as `Authorization: Bearer <token>`, with no spaces in the token.")
        token = tokens.token_lookup(header[1])
        if token is None:
            raise exceptions.AuthenticationFailed(
                f"This API token is not known. Create one on {TOKENS_PAGE} and send it as "
                "`Authorization: Bearer <token>`.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"The API token {token.name!r} was revoked on {date_format(token.revoked_at, 'Y-m-d H:i')} UTC: "
                f"create a new one on {TOKENS_PAGE}.")
        if token.is_expired:
            raise exceptions.AuthenticationFailed(
                f"The API token {token.name!r} expired on {date_format(token.expires_at, 'Y-m-d H:i')} UTC: "
                f"create a new one on {TOKENS_PAGE}.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The account this token belongs to is disabled.")
        tokens.token_touch(token)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="cargohold"'
