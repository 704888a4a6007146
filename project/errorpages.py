"""403 and 404 as pages of the dashboard (templates extending _base.html, with the
navigation), saying the server's reason: "Your role does not allow this (run backup)",
"No volume named 'x' is known."."""

from django.shortcuts import render
from django.urls import Resolver404


def _reason(exception, default: str) -> str:
    # A URL that matches no route carries the resolver's internals, not a sentence.
    if isinstance(exception, Resolver404) or not exception or not exception.args:
        return default
    message = exception.args[0]
    return message if isinstance(message, str) and message else default


def forbidden(request, exception=None):
    reason = _reason(exception, "Your role does not allow this.")
    return render(request, "403.html", {"reason": reason}, status=403)


def not_found(request, exception=None):
    reason = _reason(exception, "There is no page at this address.")
    return render(request, "404.html", {"reason": reason, "path": request.path}, status=404)
