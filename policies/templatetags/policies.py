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


@register.inclusion_tag("policies/_protection.html")
def protection_cell(protection: dict, name: str):
    return {"p": protection.get(name) if protection else None}


@register.inclusion_tag("policies/_health_summary.html")
def policy_health_summary():
    return {"health": selectors.health_summary()}
