"""Every API error is JSON a person can act on: {"error": "<one sentence>", "detail": …}.

DRF's own exceptions keep their status and headers (401's WWW-Authenticate); Cargohold's
refusals are 409 (a rule stops it: in use, locked, still running) or 400 (bad request);
404 never says whether an object exists that the caller may not see.
"""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from project.errors import CargoholdError, Refused

AUTH_HINT = " Send `Authorization: Bearer <token>` (create a token on /accounts/tokens/) or log in."


def _flatten(detail, prefix: str = "") -> list[str]:
    """Field errors as "field: message" lines, for the one-sentence summary."""
    if isinstance(detail, dict):
        return [line for key, value in detail.items()
                for line in _flatten(value, f"{prefix}{key}: " if key != "non_field_errors" else prefix)]
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


def error_response(message: str, code: int, detail=None, headers=None) -> Response:
    return Response({"error": message, "detail": detail}, status=code, headers=headers)


def exception_handler(exc, context):
    if isinstance(exc, Refused):
        return error_response(str(exc), status.HTTP_409_CONFLICT)
    if isinstance(exc, CargoholdError):
        return error_response(str(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        return error_response(str(exc) or "Not found.", status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        return error_response(str(exc) or "Your role does not allow this.", status.HTTP_403_FORBIDDEN)
    if isinstance(exc, DjangoValidationError):
        messages = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return error_response("Invalid input: " + "; ".join(_flatten(messages)), status.HTTP_400_BAD_REQUEST,
                              messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 (logged), never the traceback
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    if isinstance(exc, exceptions.ValidationError):
        message = "Invalid input: " + "; ".join(_flatten(detail))
    else:
        message = " ".join(_flatten(detail)) or "Request refused."
        if isinstance(exc, (exceptions.NotAuthenticated,)):
            message += AUTH_HINT
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Allow", "Retry-After")}
    return error_response(message, response.status_code,
                          detail if isinstance(exc, exceptions.ValidationError) else None, headers)
