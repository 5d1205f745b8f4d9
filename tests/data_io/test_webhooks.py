"""Webhooks: HMAC-signed POSTs delivered by the Celery task, retried, then given up."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from annotation.models import WebhookDelivery
from annotation.projects import services as project_services
from annotation.tasks import deliver_webhook
from annotation.webhooks import services as webhook_services


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    """The receivers below listen on loopback: allowed as a closed deployment would allow them
    (hooks reach public hosts only otherwise: tests/security/test_webhooks.py)."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def receiver():
    """A local HTTP endpoint recording requests; answers with ``receiver.status``."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(server.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.status = 204
    server.received = received
    server.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_signed_delivery_and_verification(receiver, project):
    hook = webhook_services.create_webhook(
        url=receiver.url, events=["run.finished", "snapshot.ready"]
    )
    other = webhook_services.create_webhook(url=receiver.url, events=["judgment.created"])
    ids = webhook_services.forward(
        "run.finished",
        {"run_id": 7, "kind": "dpo", "status": "succeeded", "output_model_version_id": None},
    )
    assert len(ids) == 1 and not other.deliveries.exists()
    assert deliver_webhook.apply(args=(ids[0],)).get() == {"delivered": True}
    ((headers, body),) = receiver.received
    assert headers["X-Webhook-Event"] == "run.finished"
    assert webhook_services.verify_signature(hook.secret, body, headers["X-Webhook-Signature"])
    assert not webhook_services.verify_signature(
        "wrong-secret-123456", body, headers["X-Webhook-Signature"]
    )
    assert not webhook_services.verify_signature(
        hook.secret, body + b" ", headers["X-Webhook-Signature"]
    )
    envelope = json.loads(body)
    assert envelope["data"] == {
        "run_id": 7,
        "kind": "dpo",
        "status": "succeeded",
        "output_model_version_id": None,
    }
    assert envelope["id"] == headers["X-Webhook-Id"]
    delivery = WebhookDelivery.objects.get(pk=ids[0])
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 1, 204)


@pytest.mark.django_db
def test_failures_are_retried_then_given_up(receiver, project):
    receiver.status = 500
    webhook_services.create_webhook(url=receiver.url, events=["snapshot.ready"], project=project)
    (delivery_id,) = webhook_services.emit(
        "snapshot.ready", {"snapshot_id": 1}, project_id=project.pk
    )
    assert deliver_webhook.apply(args=(delivery_id,)).get() == {"delivered": False}
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "failed" and delivery.attempts == deliver_webhook.max_retries + 1
    assert delivery.response_status == 500 and len(receiver.received) == delivery.attempts
    assert [webhook_services.retry_delay(n) for n in range(3)] == [10, 20, 40]
    assert webhook_services.retry_delay(20) == 3600


@pytest.mark.django_db
def test_project_scoped_hooks_only_hear_their_project(project, principle_set):

    other = project_services.create_project(
        name="Other", slug="other", principle_set=principle_set, task_kinds=["compare"]
    )
    webhook_services.create_webhook(
        url="http://127.0.0.1:9/x", events=["snapshot.ready"], project=other
    )
    assert webhook_services.emit("snapshot.ready", {}, project_id=project.pk) == []
    assert len(webhook_services.emit("snapshot.ready", {}, project_id=other.pk)) == 1
    with pytest.raises(ValueError):
        webhook_services.emit("nope", {})
