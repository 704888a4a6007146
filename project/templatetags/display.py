"""Display filters every template has without {% load %} (settings TEMPLATES builtins):
`{{ n|size }}` a size in binary units (project.sizes.human_size), `{{ d|pretty_json }}`
a manifest or parameters as indented JSON (what the file in storage holds, not Python's repr)."""

import json

from django import template

from project.sizes import human_size

register = template.Library()


@register.filter(is_safe=True)
def size(value) -> str:
    """`900 MiB`; a non-breaking space keeps number and unit on one line; None: ""."""
    try:
        return human_size(value).replace(" ", "\xa0")
    except (TypeError, ValueError):
        return ""


@register.filter
def pretty_json(value) -> str:
    """Indented JSON, keys in their stored order (autoescaped like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.filter
def ref_host(ref) -> str:
    """The host of a volume reference (hosts.refs): `{{ backup.volume_name|ref_host }}`."""
    from hosts.refs import host_of

    return host_of(str(ref or ""))


@register.filter
def ref_name(ref) -> str:
    """The engine's own name in a volume reference ("pgdata" for "e1:pgdata"): the name
    column beside a Host column."""
    from hosts.refs import split_ref

    return split_ref(str(ref or ""))[1]
