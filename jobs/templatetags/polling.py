"""`{% poll_attrs url active %}`: the attributes of a page's polled status region."""

from django import template
from django.utils.html import format_html

from jobs import polling

register = template.Library()


@register.simple_tag
def poll_attrs(url: str, active: bool, *, idle_poll: bool = False) -> str:
    """A detail page's region polls while `active` and not at all after; a list's region
    (`idle_poll=True`) polls fast while active and slowly otherwise. `data-poll-region` marks
    the region for the buttons inside it (they swap the whole region, see jobs/_job.html)."""
    if not active and not idle_poll:
        return format_html('data-poll-region="{}"', url)
    every = polling.ACTIVE_EVERY if active else polling.IDLE_EVERY
    return format_html('data-poll-region="{}" hx-get="{}" hx-trigger="every {}" hx-swap="outerHTML"', url, url, every)
