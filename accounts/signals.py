from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts.models import AuditEvent
from accounts.services import audit_record


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs):
    audit_record(action="login", actor=user, object_type="user", object_name=user.get_username(), request=request)


@receiver(user_logged_out)
def _audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="logout", actor=user, object_type="user", object_name=user.get_username(), request=request)


@receiver(user_login_failed)
def _audit_login_failed(sender, credentials, request=None, **kwargs):
    audit_record(
        action="login",
        object_type="user",
        object_name=str(credentials.get("username", ""))[:150],
        result=AuditEvent.Result.ERROR,
        error="Wrong user name or password.",
        request=request,
    )
