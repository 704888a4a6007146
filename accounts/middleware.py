from accounts.actors import acting_as


class AuditActorMiddleware:
    """Names the request as the actor of whatever it changes, for the audit receivers in
    accounts.signals (changes made in /admin/ reach the trail through model signals)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(request=request):
            return self.get_response(request)
