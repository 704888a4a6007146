"""/metrics for Prometheus: a fresh registry per scrape with the database collector."""

import hmac
import ipaddress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from accounts.services import client_address
from metrics.collector import CargoholdCollector


def _address_allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for allowed in settings.METRICS_ALLOWED_ADDRESSES:
        try:
            if ip in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue  # a typo in the setting allows nothing
    return False


def _token_ok(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, presented = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(),
                                                                              token.encode())


@login_not_required  # Prometheus has no session: the token or the address decides
@never_cache
@require_GET
def metrics(request):
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_ADDRESSES:
        raise Http404("Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_ADDRESSES.")
    if not (_token_ok(request) or _address_allowed(client_address(request))):
        response = HttpResponse("Send `Authorization: Bearer $METRICS_TOKEN`, or scrape from an address in "
                                "METRICS_ALLOWED_ADDRESSES.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="cargohold-metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CargoholdCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
