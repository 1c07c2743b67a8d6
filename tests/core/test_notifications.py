"""Notification channels: delivery to a real loopback HTTP receiver and locmem email, signing,
retries, filtering, deduplication, secrets at rest, and the console pages."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import connection


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers with scripted statuses."""

    def __init__(self, statuses=(200,)):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def eager_celery(settings):
    from console.celery import app

    settings.SWITCHYARD_NOTIFY_ALLOW_PRIVATE = True
    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False  # a retry inside apply() re-runs only when not propagating
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    return mail.outbox


def make_channel(tenant, **fields):
    from apps.core.notifications import create_channel

    fields.setdefault("kind", "webhook")
    fields.setdefault("name", f"{fields['kind']} channel")
    return create_channel(tenant_id=tenant.pk, **fields)


def test_a_webhook_receives_the_event_signed_with_the_channels_secret(personas, receiver, eager_celery,
                                                                        django_capture_on_commit_callbacks):
    from apps.core.notifications import notify

    make_channel(personas.tenant_a, target=receiver.url(), secret="whsec-123")
    with django_capture_on_commit_callbacks(execute=True):
        selected = notify(tenant_id="tenant-a", event="quota.violation", title="Quota reached",
                          message="Requests are refused.", link="/gateway/tenant-a/violations/")
    assert selected == 1
    (request,) = receiver.requests
    payload = json.loads(request["body"])
    assert payload["event"] == "quota.violation" and payload["tenant_id"] == "tenant-a"
    assert payload["title"] == "Quota reached" and payload["severity"] == "warning"
    assert payload["link"].endswith("/gateway/tenant-a/violations/") and payload["link"].startswith("http")
    headers = {k.lower(): v for k, v in request["headers"].items()}
    expected = hmac.new(b"whsec-123", headers["x-switchyard-timestamp"].encode() + b"." + request["body"],
                        hashlib.sha256).hexdigest()
    assert headers["x-switchyard-signature"] == f"sha256={expected}"
    assert headers["x-switchyard-delivery"] == payload["id"]
    assert headers["x-switchyard-event"] == "quota.violation"


def test_a_slack_style_channel_receives_a_text_message(personas, receiver, eager_celery,
                                                       django_capture_on_commit_callbacks):
    from apps.core.notifications import notify

    make_channel(personas.tenant_a, kind="slack", target=receiver.url("/services/T000/B000/hook"))
    with django_capture_on_commit_callbacks(execute=True):
        notify(tenant_id="tenant-a", event="sla.violation", title="SLA at risk", message="p99 above target.",
               severity="critical")
    (request,) = receiver.requests
    body = json.loads(request["body"])
    assert set(body) == {"text"}
    assert "SLA at risk" in body["text"] and "p99 above target." in body["text"] and "critical" in body["text"]
    assert "x-switchyard-signature" not in {k.lower() for k in request["headers"]}


def test_an_email_channel_sends_through_djangos_mail_backend(personas, eager_celery, locmem_mail,
                                                             django_capture_on_commit_callbacks):
    from apps.core.notifications import notify

    make_channel(personas.tenant_a, kind="email", target="ops@a.test")
    with django_capture_on_commit_callbacks(execute=True):
        notify(tenant_id="tenant-a", event="quota.violation", title="Quota reached", message="Refusing requests.")
    (message,) = locmem_mail
    assert message.to == ["ops@a.test"]
    assert "Quota reached" in message.subject and "[warning]" in message.subject
    assert "Refusing requests." in message.body and "tenant-a" in message.body


def test_only_enabled_channels_of_that_tenant_wanting_the_event_are_sent(personas, receiver, eager_celery,
                                                                          django_capture_on_commit_callbacks):
    from apps.core.notifications import notify

    make_channel(personas.tenant_a, name="quota only", target=receiver.url("/quota"), events=["quota.violation"])
    make_channel(personas.tenant_a, name="sla only", target=receiver.url("/sla"), events=["sla.violation"])
    make_channel(personas.tenant_a, name="everything", target=receiver.url("/all"))
    make_channel(personas.tenant_a, name="disabled", target=receiver.url("/off"), enabled=False)
    make_channel(personas.tenant_b, name="other tenant", target=receiver.url("/b"))
    with django_capture_on_commit_callbacks(execute=True):
        assert notify(tenant_id="tenant-a", event="quota.violation", title="t", message="m") == 2
    assert sorted(r["path"] for r in receiver.requests) == ["/all", "/quota"]


def test_nothing_is_sent_when_the_callers_transaction_rolls_back(personas, receiver, eager_celery):
    from django.db import transaction

    from apps.core.notifications import notify

    make_channel(personas.tenant_a, target=receiver.url())
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(tenant_id="tenant-a", event="quota.violation", title="t", message="m")
        raise RuntimeError("rolled back")
    assert receiver.requests == []


def test_the_same_dedup_key_sends_once_within_its_period(personas, receiver, eager_celery, redis_client,
                                                         django_capture_on_commit_callbacks):
    from apps.core.notifications import notify

    make_channel(personas.tenant_a, target=receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            notify(tenant_id="tenant-a", event="quota.violation", title="t", message="m", dedup_key="rpm")
        notify(tenant_id="tenant-a", event="quota.violation", title="t", message="m", dedup_key="tpm")
    assert len(receiver.requests) == 2


def test_a_transient_failure_is_retried_until_it_is_delivered(personas, eager_celery):
    from apps.core.models import NotificationChannel
    from apps.core.notifications import build_payload, deliver_notification

    flaky = Receiver(statuses=[503, 500, 200])
    try:
        channel = make_channel(personas.tenant_a, target=flaky.url())
        payload = build_payload(tenant_id="tenant-a", event="test", title="t", message="m")
        result = deliver_notification.apply(args=[str(channel.pk), payload], throw=False).get()
        assert result == "sent"
        assert len(flaky.requests) == 3
        ids = {r["headers"]["X-Switchyard-Delivery"] for r in flaky.requests}
        assert ids == {payload["id"]}, "every retry carries the same delivery id"
        channel = NotificationChannel.objects.get(pk=channel.pk)
        assert channel.last_status == "ok" and channel.last_error == ""
    finally:
        flaky.close()


def test_retries_stop_after_the_configured_number_and_the_failure_is_shown(personas, eager_celery, settings):
    from apps.core.models import NotificationChannel
    from apps.core.notifications import build_payload, deliver_notification

    settings.SWITCHYARD_NOTIFY_MAX_RETRIES = 4
    down = Receiver(statuses=[502])
    try:
        channel = make_channel(personas.tenant_a, target=down.url())
        payload = build_payload(tenant_id="tenant-a", event="test", title="t", message="m")
        assert deliver_notification.apply(args=[str(channel.pk), payload], throw=False).get() == "failed"
        assert len(down.requests) == 5  # the first try and 4 retries
        channel = NotificationChannel.objects.get(pk=channel.pk)
        assert channel.last_status == "failed" and channel.last_error == "The receiver answered HTTP 502."
    finally:
        down.close()


def test_a_permanent_failure_is_not_retried_and_is_shown_on_the_channel(personas, eager_celery):
    from apps.core.models import NotificationChannel
    from apps.core.notifications import build_payload, deliver_notification

    gone = Receiver(statuses=[404])
    try:
        channel = make_channel(personas.tenant_a, kind="slack", target=gone.url("/services/secret-token"))
        payload = build_payload(tenant_id="tenant-a", event="test", title="t", message="m")
        assert deliver_notification.apply(args=[str(channel.pk), payload], throw=False).get() == "failed"
        assert len(gone.requests) == 1
        channel = NotificationChannel.objects.get(pk=channel.pk)
        assert channel.last_status == "failed"
        assert channel.last_error == "The receiver answered HTTP 404."
        assert "secret-token" not in channel.last_error
    finally:
        gone.close()


def test_private_addresses_are_refused_when_not_allowed(personas, receiver, settings):
    from apps.core.notifications import send_test

    settings.SWITCHYARD_NOTIFY_ALLOW_PRIVATE = False
    channel = make_channel(personas.tenant_a, target=receiver.url().replace("http://", "https://"))
    result = send_test(channel=channel)
    assert not result.ok and "private or local" in result.detail
    plain = make_channel(personas.tenant_a, name="plain http", target=receiver.url())
    assert "https" in send_test(channel=plain).detail
    assert receiver.requests == []


def test_the_target_and_secret_are_encrypted_at_rest(personas, receiver):
    from apps.core.models import NotificationChannel

    channel = make_channel(personas.tenant_a, target=receiver.url("/services/T1/B2/topsecret"), secret="sig-key-42")
    with connection.cursor() as cursor:
        cursor.execute("SELECT target, secret FROM core_notificationchannel WHERE id = %s", [channel.pk])
        raw_target, raw_secret = cursor.fetchone()
    assert "topsecret" not in raw_target and "127.0.0.1" not in raw_target
    assert "sig-key-42" not in raw_secret
    again = NotificationChannel.objects.get(pk=channel.pk)
    assert again.target.endswith("/topsecret") and again.secret == "sig-key-42"


def test_bad_targets_are_refused_with_field_messages(personas):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        make_channel(personas.tenant_a, kind="email", target="not-an-address")
    assert "target" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        make_channel(personas.tenant_a, kind="webhook", target="ftp://example.com/x")
    assert "target" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        make_channel(personas.tenant_a, kind="email", target="a@a.test", secret="x")
    assert "secret" in info.value.message_dict


# --- The console -----------------------------------------------------------------------------


def test_a_tenant_admin_adds_a_channel_and_it_is_audited(personas, client_for, receiver):
    from apps.audit.models import AuditEvent
    from apps.core.models import NotificationChannel

    client = client_for(personas.a_admin)
    page = client.get("/notifications/tenant-a/")
    assert page.status_code == 200 and b"Add channel" in page.content
    response = client.post("/notifications/tenant-a/", {
        "name": "Ops hook", "kind": "webhook", "target": receiver.url(), "secret": "s3cret",
        "events": ["quota.violation"], "enabled": "on",
    })
    assert response.status_code == 302
    channel = NotificationChannel.objects.get(tenant_id="tenant-a", name="Ops hook")
    assert channel.events == ["quota.violation"] and channel.secret == "s3cret"
    event = AuditEvent.objects.filter(action="notification_channel.create", tenant_id="tenant-a").get()
    assert "s3cret" not in json.dumps(event.metadata)
    listing = client.get("/notifications/tenant-a/").content.decode()
    assert "Ops hook" in listing and "s3cret" not in listing
    assert receiver.url() not in listing, "only scheme and host of a URL are shown"


def test_a_bad_channel_form_is_a_400_with_the_fields_message(personas, client_for):
    response = client_for(personas.a_admin).post("/notifications/tenant-a/", {
        "name": "Mail", "kind": "email", "target": "nobody", "enabled": "on",
    })
    assert response.status_code == 400
    assert b"Enter a valid email address." in response.content


def test_send_test_delivers_now_and_shows_the_result(personas, client_for, receiver, settings):
    settings.SWITCHYARD_NOTIFY_ALLOW_PRIVATE = True
    channel = make_channel(personas.tenant_a, target=receiver.url())
    client = client_for(personas.a_admin)
    response = client.post(f"/notifications/tenant-a/{channel.pk}/test/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b"sent" in response.content
    assert json.loads(receiver.requests[0]["body"])["event"] == "test"
    receiver.statuses = [500]
    response = client.post(f"/notifications/tenant-a/{channel.pk}/test/", HTTP_HX_REQUEST="true")
    assert b"failed" in response.content and b"HTTP 500" in response.content


def test_edit_keeps_the_secret_unless_replaced_and_delete_removes_the_channel(personas, client_for, receiver):
    from apps.core.models import NotificationChannel

    channel = make_channel(personas.tenant_a, target=receiver.url(), secret="keep-me")
    client = client_for(personas.a_admin)
    form = {"name": "Renamed", "kind": "webhook", "target": receiver.url("/new"), "secret": "", "enabled": "on"}
    assert client.post(f"/notifications/tenant-a/{channel.pk}/", form).status_code == 302
    channel = NotificationChannel.objects.get(pk=channel.pk)
    assert channel.name == "Renamed" and channel.secret == "keep-me" and channel.target.endswith("/new")
    assert client.post(f"/notifications/tenant-a/{channel.pk}/delete/").status_code == 302
    assert not NotificationChannel.objects.filter(pk=channel.pk).exists()


@pytest.mark.parametrize("persona", ["a_member", "a_viewer", "a_auditor"])
def test_same_tenant_users_without_the_admin_role_get_403(personas, client_for, persona, receiver):
    channel = make_channel(personas.tenant_a, target=receiver.url())
    client = client_for(getattr(personas, persona))
    assert client.get("/notifications/tenant-a/").status_code == 403
    assert client.post(f"/notifications/tenant-a/{channel.pk}/test/").status_code == 403
    assert receiver.requests == []


def test_an_outsider_gets_404_for_another_tenants_channels(personas, client_for, receiver):
    channel = make_channel(personas.tenant_a, target=receiver.url())
    client = client_for(personas.b_admin)
    assert client.get("/notifications/tenant-a/").status_code == 404
    assert client.get(f"/notifications/tenant-a/{channel.pk}/").status_code == 404
    assert client.post(f"/notifications/tenant-a/{channel.pk}/test/").status_code == 404
    assert client.post(f"/notifications/tenant-b/{channel.pk}/delete/").status_code == 404
    assert receiver.requests == []


def test_the_index_leads_a_single_tenant_admin_straight_to_their_channels(personas, client_for):
    response = client_for(personas.a_admin).get("/notifications/")
    assert response.status_code == 302 and response["Location"] == "/notifications/tenant-a/"
    listing = client_for(personas.platform_admin).get("/notifications/")
    assert b"Tenant A" in listing.content and b"Tenant B" in listing.content



def test_a_second_channel_with_the_same_name_is_a_400_not_a_500(personas, client_for):
    make_channel(personas.tenant_a, kind="email", name="Ops", target="ops@a.test")
    response = client_for(personas.a_admin).post("/notifications/tenant-a/", {
        "name": "Ops", "kind": "email", "target": "other@a.test", "enabled": "on",
    })
    assert response.status_code == 400
    assert b"already exists" in response.content
