"""{% load redact %} ... {{ value|scrubbed }}: the scrubber at display time too.

Rows are scrubbed when they are written; pages scrub again so that what was stored
before that (an append-only audit event, an imported archive's manifest) shows no secret.
"""

from django import template

from project.redact import scrubbed as _scrubbed

register = template.Library()


@register.filter
def scrubbed(value):
    return _scrubbed(value)
