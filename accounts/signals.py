"""The audit trail's receivers: logins, lockouts, and every change of who may do what.

Model signals rather than calls in views, so that /admin/, management commands (Django's
own createsuperuser and changepassword too), django-axes' reset commands, a shell and any
later code all pass through the same place. A change is written when its transaction
commits, as one row per user or group with the state before and after: the admin's form
saves a user and then sets its groups, which is one row, not a removal and an addition,
and a change rolled back is no row at all. Password hashes are compared, never recorded.
"""

import threading

from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from accounts import selectors
from accounts.actors import audit_kwargs, current_actor
from accounts.models import AuditEvent
from accounts.services import audit_record

User = get_user_model()


# --- logins and lockouts ---------------------------------------------------------------


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs):
    audit_record(action="login", actor=user, object_type="user", object_name=user.get_username(), request=request)


@receiver(user_logged_out)
def _audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="logout", actor=user, object_type="user", object_name=user.get_username(), request=request)


def _refused_while_locked(request) -> bool:
    """An attempt django-axes refused because a lockout was already in force: its backend
    flags the request before any password is checked and counts nothing, whereas the
    attempt that starts a lockout has its failures counted."""
    return bool(getattr(request, "axes_locked_out", False)) and getattr(request, "axes_failures_since_start", None) is None


@receiver(user_login_failed)
def _audit_login_failed(sender, credentials, request=None, **kwargs):
    refused = _refused_while_locked(request)
    audit_record(
        action="login",
        object_type="user",
        object_name=str(credentials.get("username", ""))[:150],
        result=AuditEvent.Result.ERROR,
        error="Refused: locked out after too many failed logins." if refused else "Wrong user name or password.",
        request=request,
    )


@receiver(user_locked_out)
def _audit_lockout(sender, request, username, ip_address, **kwargs):
    if _refused_while_locked(request):
        return  # already locked: the refused attempt is in the trail as a failed login
    from axes.helpers import get_cool_off, get_failure_limit

    locked = [kind for kind, name in (("user", username), ("address", ip_address))
              if name and selectors.is_locked_out(kind=kind, name=name)]
    cool_off = get_cool_off(request)
    audit_record(
        action="login_lockout",
        object_type="user",
        object_name=str(username or "")[:150],
        params={"address": ip_address, "locked": locked, "failures": request.axes_failures_since_start,
                "limit": get_failure_limit(request, None),
                "minutes": int(cool_off.total_seconds() // 60) if cool_off else None},
        result=AuditEvent.Result.DENIED,
        request=request,
    )


# --- changes written when their transaction commits ---------------------------------------

_local = threading.local()


def _pending() -> dict:
    if not hasattr(_local, "pending"):
        _local.pending = {}
    return _local.pending


def _queued(callback) -> bool:
    connection = transaction.get_connection()
    return connection.in_atomic_block and any(entry[1] is callback for entry in connection.run_on_commit)


def _remember(key, snapshot) -> dict:
    """Keep the state of `key` before its first change in this transaction, and who acts."""
    pending = _pending()
    entry = pending.get(key)
    if entry is not None and entry["callback"] is not None and _queued(entry["callback"]):
        return entry
    # A stale entry (its transaction rolled back, or its save failed) is replaced.
    entry = {"before": snapshot(), "callback": None, "actor": current_actor(), "password": False, "rehash": False}
    pending[key] = entry
    return entry


def _write_on_commit(key, write) -> None:
    """After a change to `key`: write its row once this transaction commits (at once in
    autocommit). Robust: the change is committed already, a failed audit write is logged."""
    pending = _pending()
    entry = pending.get(key)
    if entry is None or (entry["callback"] is not None and _queued(entry["callback"])):
        return

    def callback():
        if pending.get(key) is entry:
            del pending[key]
        write(entry)

    entry["callback"] = callback
    transaction.on_commit(callback, robust=True)


def _m2m_pks(instance, reverse, pk_set, action, related_set: str) -> list:
    """The objects on the audited side of an m2m change. Clearing from the other side names
    none, so the pre_clear list is kept on the instance for post_clear."""
    if not reverse:
        return [instance.pk]
    if pk_set is not None:
        return list(pk_set)
    if action == "pre_clear":
        instance._audit_cleared_pks = list(getattr(instance, related_set).values_list("pk", flat=True))
    return getattr(instance, "_audit_cleared_pks", [])


# --- users: created, deleted, activated, flags, roles, direct permissions, password ----------

_USER_FIELDS = {"password", "is_active", "is_staff", "is_superuser", User.USERNAME_FIELD}
_ROLE_FIELDS = ("roles", "is_staff", "is_superuser", "permissions")


def _perm_names(queryset) -> list[str]:
    return sorted(f"{app}.{codename}" for app, codename in queryset.values_list("content_type__app_label", "codename"))


def _user_state(pk) -> dict | None:
    row = User.objects.filter(pk=pk).values("password", "is_active", "is_staff", "is_superuser", User.USERNAME_FIELD).first()
    if row is None:
        return None
    return {
        "username": row[User.USERNAME_FIELD],
        "is_active": row["is_active"],
        "is_staff": row["is_staff"],
        "is_superuser": row["is_superuser"],
        "password": row["password"],  # compared only, never written
        "roles": sorted(Group.objects.filter(user__pk=pk).values_list("name", flat=True)),
        "permissions": _perm_names(Permission.objects.filter(user__pk=pk)),
    }


def _user_writer(pk):
    def write(entry):
        before, after = entry["before"], _user_state(pk)
        if before is None or after is None:
            return  # created (its own row) or deleted since (its own row)
        who = audit_kwargs(entry["actor"])

        def record(action, params=None):
            audit_record(action=action, object_type="user", object_name=after["username"], params=params, **who)

        if before["username"] != after["username"]:
            record("user_rename", {"before": before["username"], "after": after["username"]})
        if before["is_active"] != after["is_active"]:
            record("user_activate" if after["is_active"] else "user_deactivate")
        changed = [field for field in _ROLE_FIELDS if before[field] != after[field]]
        if changed:
            record("user_roles_change", {"before": {f: before[f] for f in changed}, "after": {f: after[f] for f in changed}})
        # Logging in may re-hash a password (a stronger hasher): same password, no row.
        if entry["password"] or (before["password"] != after["password"] and not entry["rehash"]):
            record("user_password_change", {"usable": not after["password"].startswith(UNUSABLE_PASSWORD_PREFIX)})

    return write


@receiver(pre_save, sender=User)
def _user_before_save(sender, instance, raw=False, update_fields=None, **kwargs):
    if raw or instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and not set(update_fields) & _USER_FIELDS:
        return  # last_login on every login
    entry = _remember(("user", instance.pk), lambda: _user_state(instance.pk))
    if getattr(instance, "_password", None) is not None:  # set_password() was called
        entry["password"] = True
    elif update_fields is not None and set(update_fields) == {"password"}:
        entry["rehash"] = True


@receiver(post_save, sender=User)
def _user_after_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    if created:
        audit_record(action="user_create", object_type="user", object_name=instance.get_username(),
                     params={"is_active": instance.is_active, "is_staff": instance.is_staff,
                             "is_superuser": instance.is_superuser}, **audit_kwargs(current_actor()))
        return
    _write_on_commit(("user", instance.pk), _user_writer(instance.pk))


@receiver(pre_delete, sender=User)
def _user_before_delete(sender, instance, **kwargs):
    instance._audit_last_state = _user_state(instance.pk)


@receiver(post_delete, sender=User)
def _user_after_delete(sender, instance, **kwargs):
    state = getattr(instance, "_audit_last_state", None) or {}
    audit_record(action="user_delete", object_type="user", object_name=instance.get_username(),
                 params={field: state.get(field) for field in _ROLE_FIELDS}, **audit_kwargs(current_actor()))


def _user_m2m_changed(sender, instance, action, reverse, pk_set, **kwargs):
    pks = _m2m_pks(instance, reverse, pk_set, action, "user_set")
    for pk in pks:
        if action.startswith("pre_"):
            _remember(("user", pk), lambda pk=pk: _user_state(pk))
        else:
            _write_on_commit(("user", pk), _user_writer(pk))


m2m_changed.connect(_user_m2m_changed, sender=User.groups.through, dispatch_uid="audit_user_groups")
m2m_changed.connect(_user_m2m_changed, sender=User.user_permissions.through, dispatch_uid="audit_user_permissions")


# --- groups: created, renamed, deleted, permissions --------------------------------------------


def _group_state(pk) -> dict | None:
    name = Group.objects.filter(pk=pk).values_list("name", flat=True).first()
    if name is None:
        return None
    return {"name": name, "permissions": _perm_names(Permission.objects.filter(group__pk=pk))}


def _group_writer(pk):
    def write(entry):
        before, after = entry["before"], _group_state(pk)
        if before is None or after is None:
            return
        who = audit_kwargs(entry["actor"])
        if before["name"] != after["name"]:
            audit_record(action="group_rename", object_type="group", object_name=after["name"],
                         params={"before": before["name"], "after": after["name"]}, **who)
        added = sorted(set(after["permissions"]) - set(before["permissions"]))
        removed = sorted(set(before["permissions"]) - set(after["permissions"]))
        if added or removed:
            audit_record(action="group_permissions_change", object_type="group", object_name=after["name"],
                         params={"added": added, "removed": removed}, **who)

    return write


@receiver(pre_save, sender=Group)
def _group_before_save(sender, instance, raw=False, **kwargs):
    if not raw and instance.pk is not None and not instance._state.adding:
        _remember(("group", instance.pk), lambda: _group_state(instance.pk))


@receiver(post_save, sender=Group)
def _group_after_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    if created:
        audit_record(action="group_create", object_type="group", object_name=instance.name,
                     **audit_kwargs(current_actor()))
        return
    _write_on_commit(("group", instance.pk), _group_writer(instance.pk))


@receiver(pre_delete, sender=Group)
def _group_before_delete(sender, instance, **kwargs):
    # Deleting a group takes its role from every member without an m2m signal: name them.
    instance._audit_last_state = {
        "members": sorted(instance.user_set.values_list(User.USERNAME_FIELD, flat=True)),
        "permissions": _perm_names(instance.permissions.all()),
    }


@receiver(post_delete, sender=Group)
def _group_after_delete(sender, instance, **kwargs):
    audit_record(action="group_delete", object_type="group", object_name=instance.name,
                 params=getattr(instance, "_audit_last_state", {}), **audit_kwargs(current_actor()))


@receiver(m2m_changed, sender=Group.permissions.through, dispatch_uid="audit_group_permissions")
def _group_permissions_changed(sender, instance, action, reverse, pk_set, **kwargs):
    for pk in _m2m_pks(instance, reverse, pk_set, action, "group_set"):
        if action.startswith("pre_"):
            _remember(("group", pk), lambda pk=pk: _group_state(pk))
        else:
            _write_on_commit(("group", pk), _group_writer(pk))


# --- lockouts lifted: our page, `manage.py axes_reset*`, or code ------------------------------


def _attempt_keys(instance):
    return [(kind, name) for kind, name in (("user", instance.username), ("address", instance.ip_address)) if name]


def _lift_writer(kind, name):
    def write(entry):
        # Expired attempts cleaned up, or a reset of attempts that locked nothing: no row.
        if entry["before"] and not selectors.is_locked_out(kind=kind, name=name):
            audit_record(action="login_lockout_lift", object_type=kind, object_name=name, **audit_kwargs(entry["actor"]))

    return write


@receiver(pre_delete, sender=AccessAttempt)
def _attempt_before_delete(sender, instance, **kwargs):
    for kind, name in _attempt_keys(instance):
        _remember(("lockout", kind, name), lambda kind=kind, name=name: selectors.is_locked_out(kind=kind, name=name))


@receiver(post_delete, sender=AccessAttempt)
def _attempt_after_delete(sender, instance, **kwargs):
    for kind, name in _attempt_keys(instance):
        _write_on_commit(("lockout", kind, name), _lift_writer(kind, name))
