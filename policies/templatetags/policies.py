"""{% load policies %}: protection badges for the volumes list, the overview's summary."""

from django import template

from policies import cron, selectors

register = template.Library()


@register.filter
def cron_description(expression: str) -> str:
    return cron.describe(expression)


@register.simple_tag
def protection_for(volumes):
    """{% protection_for page as protection %}: one batch of queries for a page of volumes."""
    names = [v.name for v in volumes]
    return selectors.protection_map(names=names)


@register.inclusion_tag("policies/_covered_by.html", takes_context=True)
def covered_by(context, volume):
    """The volume page's "which policies cover it" line (and its protection state)."""
    p = selectors.protection_map(names=[volume.name]).get(volume.name)
    policies = list(zip(p.policy_ids, p.policy_names)) if p else []
    return {"p": p, "policies": policies, "volume": volume, "can": context.get("can", {})}


@register.inclusion_tag("policies/_protection.html")
def protection_cell(protection: dict, name: str):
    return {"p": protection.get(name) if protection else None}
