"""{% load drills %}: the dumps sections of the volume page and the backup page (their
views are other apps': these tags bring their own data, from the mirror and the manifest)."""

from django import template

from accounts import roles, scoping
from backups.recipes import RecipeError, describe, recipe_id, recipes_for
from drills.models import DumpChoice

register = template.Library()


@register.inclusion_tag("drills/_volume_dumps.html", takes_context=True)
def volume_dumps(context, volume):
    """The recipes that apply to the containers mounting `volume`, and which are chosen."""
    from volumes.models import Mount

    chosen = set(DumpChoice.objects.filter(volume_name=volume.name).values_list("container_name", "recipe"))
    rows, problems = [], []
    mounts = Mount.objects.filter(volume=volume, container__gone_since__isnull=True).select_related("container")
    for mount in mounts:
        c = mount.container
        try:
            found = recipes_for(c.image, c.labels or {})
        except RecipeError as exc:
            problems.append(f"{c.name}: {exc}")
            continue
        for recipe in found:
            rid = recipe_id(recipe)
            rows.append({"container": c.name, "recipe": rid, "label": recipe.label, "command": describe(recipe),
                         "chosen": (c.name, rid) in chosen, "running": c.state == "running"})
    request = context.get("request")
    may = bool(request and scoping.can(request.user, roles.MANAGE_VOLUMES, volume))
    return {"volume": volume, "rows": rows, "problems": problems, "may_choose": may, "request": request,
            "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("drills/_backup_dumps.html", takes_context=True)
def backup_dumps(context, backup):
    request = context.get("request")
    may = bool(request and backup.volume_id and scoping.can(request.user, roles.RESTORE_IN_PLACE, backup.volume))
    return {"backup": backup, "dumps": (backup.manifest or {}).get("dumps") or [], "may_load": may,
            "csrf_token": context.get("csrf_token")}
