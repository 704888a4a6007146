"""Notifications: a real HTTP server on 127.0.0.1 for the webhook, Django's locmem backend
for email (pytest-django's default), and a real SMTP server on loopback once."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from policies import notify
from policies.models import Delivery, Notification, NotificationSettings

pytestmark = [pytest.mark.django_db]


class Hook:
    """A tiny webhook receiver: answers with the queued status codes (then 200)."""

    def __init__(self, statuses=(), delay: float = 0):
        self.statuses = list(statuses)
        self.delay = delay
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append({"body": json.loads(body), "type": self.headers.get("Content-Type")})
                if hook.delay:
                    threading.Event().wait(hook.delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    hooks = []

    def make(*statuses, delay: float = 0) -> Hook:
        h = Hook(statuses, delay=delay)
        hooks.append(h)
        return h

    yield make
    for h in hooks:
        h.close()


@pytest.fixture
def no_enqueue(monkeypatch):
    from policies import tasks

    queued = []
    monkeypatch.setattr(tasks.deliver_notification, "delay", lambda pk: queued.append(pk))
    return queued


def configure(**fields):
    NotificationSettings.objects.update_or_create(singleton=1, defaults=fields)


def failed_run(**extra):
    return notify.notify(event=Notification.Event.RUN_FAILED, subject="Backup policy nightly: db failed",
                         text="The volume is gone.", payload={"policy": "nightly", "volume": "db", **extra})


def test_a_webhook_gets_a_json_post(hook, no_enqueue, django_capture_on_commit_callbacks):
    h = hook()
    configure(webhook_enabled=True, webhook_url=h.url)
    with django_capture_on_commit_callbacks(execute=True):
        n = failed_run()
    [delivery] = n.deliveries.all()
    assert no_enqueue == [delivery.pk]  # queued for the worker once committed
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.SENT
    [got] = h.received
    assert got["type"] == "application/json"
    assert got["body"]["event"] == "run_failed" and got["body"]["volume"] == "db"
    assert "nightly" in got["body"]["text"] or "nightly" in got["body"]["subject"]
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1


def test_a_failing_webhook_is_retried_with_backoff_then_given_up(hook, no_enqueue, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.NOTIFY_RETRY_BASE_SECONDS = 10
    h = hook(500, 503, 500)
    configure(webhook_enabled=True, webhook_url=h.url)
    [delivery] = failed_run().deliveries.all()
    outcomes = [notify.delivery_attempt(delivery_id=delivery.pk) for _ in range(4)]
    assert outcomes == [notify.RETRY, notify.RETRY, notify.FAILED, notify.NOTHING]
    assert [notify.retry_delay(n) for n in (1, 2, 3)] == [10, 20, 40]
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 3 and "HTTP 500" in delivery.last_error
    assert len(h.received) == 3


def test_a_webhook_that_recovers_is_sent_on_a_later_attempt(hook, no_enqueue):
    h = hook(502)
    configure(webhook_enabled=True, webhook_url=h.url)
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.RETRY
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.SENT
    assert len(h.received) == 2


def test_a_client_error_is_not_retried(hook, no_enqueue):
    h = hook(404)
    configure(webhook_enabled=True, webhook_url=h.url)
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.FAILED
    delivery.refresh_from_db()
    assert "HTTP 404" in delivery.last_error


def test_a_slow_webhook_times_out(hook, no_enqueue, settings):
    settings.NOTIFY_WEBHOOK_TIMEOUT_SECONDS = 1
    h = hook(delay=3)
    configure(webhook_enabled=True, webhook_url=h.url)
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.RETRY
    delivery.refresh_from_db()
    assert "could not be reached" in delivery.last_error and "timed out" in delivery.last_error


def test_an_unreachable_webhook_is_retried(no_enqueue):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configure(webhook_enabled=True, webhook_url=f"http://127.0.0.1:{port}/hook")
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.RETRY
    delivery.refresh_from_db()
    assert "refused" in delivery.last_error.lower()


def test_email_goes_to_every_address(no_enqueue):
    configure(email_enabled=True, email_to="ops@example.com, dba@example.com")
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.SENT
    [message] = mail.outbox
    assert message.to == ["ops@example.com", "dba@example.com"]
    assert message.subject == "[Cargohold] Backup policy nightly: db failed"
    assert "The volume is gone." in message.body


def test_email_through_a_real_smtp_server_on_loopback(no_enqueue, settings):
    """The SMTP backend Django uses in production, against a minimal SMTP server."""
    received = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def smtp():
        conn, _ = server.accept()
        f = conn.makefile("rwb")

        def say(line):
            f.write(line.encode() + b"\r\n")
            f.flush()

        say("220 localhost ready")
        data = False
        for raw in f:
            line = raw.decode().rstrip("\r\n")
            if data:
                if line == ".":
                    data = False
                    say("250 queued")
                else:
                    received.append(line)
                continue
            verb = line.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 localhost")
            elif verb == "DATA":
                data = True
                say("354 go ahead")
            elif verb == "QUIT":
                say("221 bye")
                break
            else:
                say("250 ok")
        conn.close()

    thread = threading.Thread(target=smtp, daemon=True)
    thread.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.getsockname()[1]
    configure(email_enabled=True, email_to="ops@example.com")
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.SENT
    thread.join(timeout=10)
    server.close()
    assert any("Subject: [Cargohold] Backup policy nightly: db failed" in line for line in received)


def test_an_smtp_server_that_is_down_is_a_retry_not_a_crash(no_enqueue, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    configure(email_enabled=True, email_to="ops@example.com")
    [delivery] = failed_run().deliveries.all()
    assert notify.delivery_attempt(delivery_id=delivery.pk) == notify.RETRY
    delivery.refresh_from_db()
    assert "Sending the email failed" in delivery.last_error


def test_events_follow_the_settings(no_enqueue):
    configure(email_enabled=True, email_to="ops@example.com", on_success=False, on_failure=True, on_overdue=False)
    assert notify.notify(event=Notification.Event.RUN_SUCCEEDED, subject="ok", text="ok") is None
    assert notify.notify(event=Notification.Event.VOLUME_OVERDUE, subject="late", text="late") is None
    assert notify.notify(event=Notification.Event.RUN_FAILED, subject="bad", text="bad") is not None
    configure(email_enabled=False, webhook_enabled=False)
    assert notify.notify(event=Notification.Event.RUN_FAILED, subject="bad", text="bad") is None


def test_notify_never_raises(no_enqueue, monkeypatch):
    configure(email_enabled=True, email_to="ops@example.com")

    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(Notification.objects, "create", broken)
    assert failed_run() is None


def test_a_lost_delivery_is_queued_again(no_enqueue):
    from datetime import timedelta

    from django.utils import timezone

    configure(email_enabled=True, email_to="ops@example.com")
    [delivery] = failed_run().deliveries.all()
    assert notify.deliveries_requeue_stuck() == []
    Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert notify.deliveries_requeue_stuck() == [delivery.pk]
    assert no_enqueue[-1] == delivery.pk


def test_the_test_button_needs_a_channel(no_enqueue):
    from project.errors import Refused

    with pytest.raises(Refused):
        notify.notification_send_test()
    configure(email_enabled=True, email_to="ops@example.com")
    n = notify.notification_send_test()
    assert n.event == "test" and n.deliveries.count() == 1
