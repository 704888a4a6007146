"""OpenAPI: every operation documents the JSON errors it can answer, so a client (and the
schemathesis run in the tests) knows their shape."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_CODES = {
    "400": "Invalid input: the message says which field and why.",
    "401": "No credentials, or an unknown, expired or revoked token.",
    "403": "Your role (or a read-only token) does not allow this.",
    "404": "No such object, or not one you can see.",
    "409": "Refused by a rule (running, in use, locked...): nothing was changed.",
}


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, in a sentence a person can act on.")
    detail = serializers.JSONField(allow_null=True, help_text="Field errors, when there are some.")


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in ERROR_CODES.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code, direction=direction)
        return responses


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An API token from /accounts/tokens/: `Authorization: Bearer chk_…`."}
