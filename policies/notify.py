"""Notifications: by email (Django's email settings) and by webhook (a JSON POST).

`notify()` records a Notification and one Delivery per enabled channel and queues a
task per delivery; it never raises (a notification must not break a job or a check).
The task makes one attempt (`delivery_attempt`) and retries with an exponential
backoff until NOTIFY_MAX_ATTEMPTS; every failure is logged and kept on the delivery
for the notifications page. A delivery whose task was lost (Redis down at the time, a
worker killed) is queued again by the periodic check.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from policies.models import Delivery, Notification, NotificationSettings
from project.errors import Refused

logger = logging.getLogger(__name__)

RETRY = "retry"
SENT = "sent"
FAILED = "failed"
NOTHING = "nothing"


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def _wanted(config: NotificationSettings, event: str) -> bool:
    return {
        Notification.Event.RUN_FAILED: config.on_failure,
        Notification.Event.VOLUME_OVERDUE: config.on_overdue,
        Notification.Event.RUN_SUCCEEDED: config.on_success,
        Notification.Event.TEST: True,
    }.get(event, False)


def _channels(config: NotificationSettings) -> list[tuple[str, str]]:
    channels = []
    if config.email_enabled and config.email_recipients:
        channels.append((Delivery.Channel.EMAIL, ", ".join(config.email_recipients)))
    if config.webhook_enabled and config.webhook_url:
        channels.append((Delivery.Channel.WEBHOOK, config.webhook_url))
    return channels


def _enqueue(delivery_id: int) -> None:
    from policies import tasks

    try:
        tasks.deliver_notification.delay(delivery_id)
    except Exception:  # Redis down: the periodic check queues it again
        logger.exception("could not queue notification delivery %s", delivery_id)


def _create(*, event: str, subject: str, text: str, payload: dict, channels) -> Notification:
    with transaction.atomic():
        notification = Notification.objects.create(
            event=event, subject=subject[:255], text=text,
            payload={"source": "cargohold", "event": event, "subject": subject[:255], "text": text,
                     "at": timezone.now().isoformat(), **payload},
        )
        for channel, target in channels:
            delivery = Delivery.objects.create(notification=notification, channel=channel, target=target)
            transaction.on_commit(lambda pk=delivery.pk: _enqueue(pk))
    return notification


def notify(*, event: str, subject: str, text: str, payload: dict | None = None) -> Notification | None:
    """Queue a notification on every enabled channel, if the settings want this event.
    Never raises: failures are logged."""
    try:
        config = NotificationSettings.load()
        channels = _channels(config)
        if not channels or not _wanted(config, event):
            return None
        return _create(event=event, subject=subject, text=text, payload=payload or {}, channels=channels)
    except Exception:
        logger.exception("could not queue the notification %r", subject)
        return None


def notification_send_test(*, user=None, request=None) -> Notification:
    """The Send test button: one notification through every configured channel."""
    from accounts.services import audit_record

    config = NotificationSettings.load()
    channels = _channels(config)
    if not channels:
        raise Refused("Nothing to test: enable email (with at least one address) or a webhook URL, and save.")
    who = user.get_username() if user is not None and user.is_authenticated else "someone"
    notification = _create(
        event=Notification.Event.TEST, subject="Test notification from Cargohold",
        text=f"{who} sent this test from the notification settings. If you read it, notifications work.",
        payload={"test": True}, channels=channels,
    )
    audit_record(action="notification_test", actor=user, request=request, object_type="notifications",
                 object_name="settings", params={"channels": [c for c, _ in channels]})
    return notification


def _url_for_audit(url: str) -> str:
    """Scheme and host only: webhook URLs often carry their secret in the path or query."""
    from urllib.parse import urlsplit

    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}/***"


def notification_settings_save(*, config: NotificationSettings, user=None, request=None) -> NotificationSettings:
    from accounts.services import audit_record

    config.singleton = 1
    config.updated_by = user if (user is not None and user.is_authenticated) else None
    existing = NotificationSettings.objects.filter(singleton=1).values_list("pk", flat=True).first()
    if existing is not None:
        config.pk = existing
    config.save()
    audit_record(
        action="notification_settings_update", actor=user, request=request, object_type="notifications",
        object_name="settings",
        params={"email_enabled": config.email_enabled, "email_to": config.email_to,
                "webhook_enabled": config.webhook_enabled, "webhook_url": _url_for_audit(config.webhook_url),
                "on_failure": config.on_failure, "on_overdue": config.on_overdue, "on_success": config.on_success},
    )
    return config


# --- delivering (worker side) ---------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be replayed as a GET without its body: report it instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _post_webhook(url: str, payload: dict) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise DeliveryError("The webhook URL must start with http:// or https://.", permanent=True)
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "Cargohold-notifications"},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read(64 * 1024)
            status = response.status
    except urllib.error.HTTPError as exc:
        # 4xx other than "try later" will not get better by retrying.
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 425, 429)
        raise DeliveryError(f"The webhook answered HTTP {exc.code} {exc.reason}.", permanent=permanent) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"The webhook could not be reached: {reason}.") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"The webhook answered HTTP {status}.")


def _send_email(recipients: list[str], subject: str, text: str) -> None:
    if not recipients:
        raise DeliveryError("No email address is configured.", permanent=True)
    try:
        EmailMessage(subject=f"[Cargohold] {subject}", body=text, to=recipients).send(fail_silently=False)
    except Exception as exc:  # smtplib, socket and backend errors alike
        raise DeliveryError(f"Sending the email failed: {type(exc).__name__}: {exc}") from None


def retry_delay(attempts: int) -> int:
    """Seconds before the next attempt after `attempts` failed ones: base, 2x, 4x... (max 1 h)."""
    return int(min(3600, settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def delivery_attempt(*, delivery_id: int) -> str:
    """One attempt at one delivery; returns SENT, RETRY, FAILED (gave up) or NOTHING."""
    delivery = Delivery.objects.select_related("notification").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != Delivery.Status.PENDING:
        return NOTHING
    attempts = delivery.attempts + 1
    n = delivery.notification
    now = timezone.now()
    try:
        if delivery.channel == Delivery.Channel.WEBHOOK:
            _post_webhook(delivery.target, n.payload)
        else:
            _send_email([a.strip() for a in delivery.target.split(",") if a.strip()], n.subject, n.text)
    except DeliveryError as exc:
        give_up = exc.permanent or attempts >= settings.NOTIFY_MAX_ATTEMPTS
        Delivery.objects.filter(pk=delivery.pk).update(
            attempts=attempts, last_error=str(exc)[:2000], last_attempt_at=now,
            status=Delivery.Status.FAILED if give_up else Delivery.Status.PENDING,
        )
        logger.warning("notification %s by %s, attempt %s: %s%s", n.pk, delivery.channel, attempts, exc,
                       " (giving up)" if give_up else "")
        return FAILED if give_up else RETRY
    Delivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts, last_attempt_at=now, sent_at=now, status=Delivery.Status.SENT, last_error=""
    )
    return SENT


def deliveries_requeue_stuck(*, now=None) -> list[int]:
    """Queue again pending deliveries whose task was lost (queued long ago, no attempt
    for much longer than their backoff)."""
    now = now or timezone.now()
    ids = []
    for d in Delivery.objects.filter(status=Delivery.Status.PENDING).only("pk", "attempts", "last_attempt_at",
                                                                          "created_at"):
        last = d.last_attempt_at or d.created_at
        if now - last > timedelta(seconds=max(600, 2 * retry_delay(d.attempts + 1))):
            ids.append(d.pk)
            _enqueue(d.pk)
    return ids
