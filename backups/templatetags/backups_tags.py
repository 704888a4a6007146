"""Small template helpers for the backup fragments other pages include."""

from datetime import timedelta

from django import template

from backups import selectors, services

register = template.Library()


@register.simple_tag
def volume_backups(volume, limit: int = 10):
    return selectors.backups_of_volume(name=volume.name, limit=limit)


@register.simple_tag(takes_context=True)
def compose_projects(context):
    return selectors.compose_projects(who=context.get("request"))


@register.filter
def stops_by_default(volume) -> bool:
    return services.stops_by_default(volume)


@register.filter
def short_duration(value) -> str:
    """1.4 s, 42 s, 3 min 05 s, 2 h 10 min."""
    if not isinstance(value, timedelta):
        return ""
    seconds = value.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
