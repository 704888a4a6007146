from django import template
from project.templatetags.display import size

from insights import selectors
from insights.views import graph_poll_url

register = template.Library()


@register.inclusion_tag("insights/_volume_panels.html", takes_context=True)
def volume_insights(context, volume):
    """The volume page's size history and neighbourhood (the page has checked the permission)."""
    request = context.get("request")
    range_key = request.GET.get("range", "day") if request else "day"
    filters = selectors.GraphFilters(volume=volume.name)
    return {
        "volume": volume,
        "history": selectors.usage_history(volume=volume, range_key=range_key),
        "view": selectors.sharing_graph(filters=filters),
        "poll_url": graph_poll_url(filters, selectors.mirror_version()),
        "compact": True,
    }


@register.filter
def signed_size(value) -> str:
    """+1.2 MiB / −300 bytes: a size change with its sign (binary units, like |size)."""
    if value is None:
        return ""
    value = int(value)
    return f"+{size(value)}" if value >= 0 else f"−{size(-value)}"
