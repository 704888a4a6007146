from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import roles, scoping
from accounts.services import audit_record
from backups.recipes import recipe_named
from drills.forms import PolicyHooksForm
from drills.models import Drill, DumpChoice
from jobs.services import job_create
from policies.models import BackupPolicy
from project.errors import CargoholdError, Refused


@require_http_methods(["GET", "POST"])
def policy_hooks(request, policy_id: int):
    """A policy's hooks and drills: global Admins only (hooks run commands in containers)."""
    scoping.require_global(request, roles.MANAGE_POLICIES, object_type="policy", object_name=str(policy_id))
    policy = BackupPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        raise Http404("No such policy.")
    form = PolicyHooksForm(request.POST or None, instance=policy)
    if request.method == "POST" and form.is_valid():
        form.save()
        audit_record(action="policy_hooks_update", request=request, object_type="policy", object_name=policy.name,
                     params={name: form.cleaned_data[name] for name in form.changed_data})
        messages.success(request, f"Hooks and drills of {policy.name} saved.")
        return redirect("policy_detail", policy_id=policy.pk)
    drills = Drill.objects.filter(policy=policy).select_related("job")[:20]
    return render(request, "drills/policy_hooks.html", {"policy": policy, "form": form, "drills": drills})


@require_POST
def volume_dump_choose(request, name: str):
    """Opt a volume in (or out) of a recipe's dump in one of its containers (Admins)."""
    from volumes.models import Mount, Volume

    volume = scoping.require_on(request, roles.MANAGE_VOLUMES, Volume.objects.filter(name=name).first(),
                                object_type="volume", object_name=name, missing="No such volume.")
    container, recipe = request.POST.get("container", "")[:255], request.POST.get("recipe", "")[:600]
    mount = Mount.objects.filter(volume=volume, container__name=container,
                                 container__gone_since__isnull=True).select_related("container").first()
    try:
        if mount is None:
            raise Refused(f"No container named {container!r} mounts {name}.")
        recipe_named(recipe, image=mount.container.image, labels=mount.container.labels or {})
    except CargoholdError as exc:
        messages.error(request, str(exc))
        return redirect("volume_detail", name=name)
    enable = request.POST.get("enable") == "1"
    if enable:
        DumpChoice.objects.get_or_create(volume_name=name, container_name=container, recipe=recipe,
                                         defaults={"created_by": request.user})
    else:
        DumpChoice.objects.filter(volume_name=name, container_name=container, recipe=recipe).delete()
    audit_record(action="dump_choose" if enable else "dump_unchoose", request=request, object_type="volume",
                 object_name=name, params={"container": container, "recipe": recipe})
    messages.success(request, f"{'Each backup of' if enable else 'Backups of'} {name} "
                              f"{'now takes' if enable else 'no longer take'} a {recipe} dump of {container}.")
    return redirect("volume_detail", name=name)


@require_POST
def backup_dump_load(request, backup_id: int):
    """Load one of a backup's dumps back into its container (a job): replaces its database."""
    from backups.dumps import KIND_DUMP_LOAD
    from backups.models import Backup

    backup = Backup.objects.filter(pk=backup_id).select_related("volume").first()
    scoping.require_on(request, roles.RESTORE_IN_PLACE, backup.volume if backup else None, object_type="backup",
                       object_name=str(backup_id), missing="No such backup.")
    key = request.POST.get("key", "")
    entry = next((d for d in (backup.manifest or {}).get("dumps") or [] if d.get("key") == key), None)
    if entry is None or not entry.get("loadable"):
        messages.error(request, "That dump is not one of this backup's, or cannot be loaded from here.")
        return redirect("backup_detail", backup_id=backup.pk)
    with transaction.atomic():
        job = job_create(kind=KIND_DUMP_LOAD, target=backup.volume_name, params={"backup": backup.pk, "key": key},
                         user=request.user)
        audit_record(action="dump_load_start", request=request, object_type="volume", object_name=backup.volume_name,
                     params={"backup": backup.pk, "dump": entry["file"], "container": entry["container"],
                             "job": job.pk})
    messages.success(request, f"Loading {entry['file']} into {entry['container']}: job #{job.pk}.")
    return redirect("job_detail", job_id=job.pk)
