from django.contrib.auth.decorators import login_not_required
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView


class Open:
    """DRF authenticates API requests itself (token or session) and answers 401 JSON: the
    site's LoginRequiredMiddleware must not redirect them to the login page."""

    @classmethod
    def as_view(cls, **initkwargs):
        return login_not_required(super().as_view(**initkwargs))


class ApiView(Open, APIView):
    pass


def accepted(data) -> Response:
    """202: queued; follow the job at its `url` (GET /api/v1/jobs/<id>/)."""
    return Response(data, status=status.HTTP_202_ACCEPTED)


def query(name: str, description: str, *, enum: list | None = None, type=str) -> OpenApiParameter:
    return OpenApiParameter(name, type=type, location=OpenApiParameter.QUERY, required=False,
                            description=description, enum=enum)
