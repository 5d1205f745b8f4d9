"""Webhook SSRF (issue 17): hooks reach public hosts only, checked when saved and again, against
the resolved addresses, when delivered (pinned: the checked address is the one connected to);
redirects are never followed; ``WEBHOOK_ALLOWED_HOSTS`` lets named internal hosts through."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from rest_framework.test import APIClient

from annotation.models import WebhookDelivery
from annotation.tasks import deliver_webhook
from annotation.webhooks import services as webhook_services
from common.outbound import RefusedURLError

REFUSED = [
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://localhost:6379/",
    "http://LOCALHOST./x",
    "http://api.localhost/x",
    "http://\u24dbocalhost/x",  # "ⓛocalhost": IDNA maps it to localhost
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[::1]:8000/",
    "http://127.0.0.1/",
    "http://127.0.0.2:8000/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # shared address space (carrier NAT)
    "http://100.100.100.200/",  # a cloud's metadata address, in that space
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",  # a cloud's IPv6 metadata address
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, mapped
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "ftp://example.org/hook",
    "file:///etc/passwd",
    "gopher://example.org:70/_",
    "http:///nohost",
    "http://example.org:99999/",
]
ACCEPTED = ["https://hooks.example.org/x?a=1", "http://93.184.216.34:8080/hook"]


@pytest.fixture
def admin_api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.mark.parametrize("url", REFUSED)
def test_every_private_address_form_is_refused_at_creation(url, admin_api, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    answer = admin_api.post(
        "/api/v1/webhooks/", {"url": url, "events": ["run.finished"]}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["url"][0]  # a message names what is wrong
    with pytest.raises((RefusedURLError, ValueError)):
        webhook_services.create_webhook(url=url, events=["run.finished"])
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_public_urls_are_accepted_and_edits_are_checked_too(admin_api):
    for url in ACCEPTED:
        answer = admin_api.post(
            "/api/v1/webhooks/", {"url": url, "events": ["run.finished"]}, format="json"
        )
        assert answer.status_code == 201, answer.content
    hook_id = answer.json()["id"]
    edit = admin_api.patch(
        f"/api/v1/webhooks/{hook_id}/", {"url": "http://169.254.169.254/"}, format="json"
    )
    assert edit.status_code == 400 and "link-local" in edit.json()["url"][0]


class Receiver:
    """A loopback HTTP server that records requests and answers ``status`` (with
    ``location`` as the redirect target)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, status: int = 204) -> None:
        self.requests: list[dict] = []
        self.status = status
        self.location = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(dict(self.headers))
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = HTTPServer((host, port), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(**kwargs) -> Receiver:
        started.append(Receiver(**kwargs))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture
def dns(monkeypatch):
    """``dns["name"] = ["127.0.0.1", …]``: answers the resolver gives for a name, one list per
    call (the last one repeats); other names resolve as usual. ``dns.calls`` counts lookups."""
    real = socket.getaddrinfo

    class Table(dict):
        calls: list[str] = []

    table = Table()

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            return real(host, port, *args, **kwargs)
        table.calls.append(host)
        answers = table[host]
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def deliver_once(url: str, settings, allowed: list[str]) -> WebhookDelivery:
    settings.WEBHOOK_ALLOWED_HOSTS = allowed
    webhook_services.create_webhook(url=url, events=["run.finished"])
    (delivery_id,) = webhook_services.emit("run.finished", {"run_id": 1})
    webhook_services.deliver(delivery_id=delivery_id)
    return WebhookDelivery.objects.get(pk=delivery_id)


@pytest.mark.django_db
def test_a_name_that_resolves_to_loopback_is_refused_at_delivery(receivers, dns, settings):
    receiver = receivers()
    dns["hooks.example.org"] = ["127.0.0.1"]
    delivery = deliver_once(f"http://hooks.example.org:{receiver.port}/h", settings, [])
    assert delivery.status == "pending" and delivery.response_status is None
    assert "127.0.0.1 is a loopback address" in delivery.last_error
    dns["hooks.example.org"] = ["::ffff:169.254.169.254"]
    webhook_services.deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert "169.254.169.254 is a link-local" in delivery.last_error and delivery.attempts == 2
    assert receiver.requests == []


@pytest.mark.django_db
def test_the_checked_address_is_the_one_connected_to(receivers, dns, settings):
    """DNS rebinding: the name resolves to an allowed address once, then to a loopback one.
    The delivery resolves once and connects to what it checked."""
    allowed = receivers(host="127.0.0.1")
    rebound = receivers(host="127.0.0.2", port=allowed.port)
    dns["rebind.example"] = ["127.0.0.1", "127.0.0.2"]
    url = f"http://rebind.example:{allowed.port}/h"
    delivery = deliver_once(url, settings, ["127.0.0.1/32"])
    assert delivery.status == "delivered", delivery.last_error
    assert dns.calls == ["rebind.example"] and rebound.requests == []
    ((headers,),) = [allowed.requests]
    assert headers["Host"] == f"rebind.example:{allowed.port}"
    webhook_services.deliver(delivery_id=delivery.pk)  # delivered: nothing more is sent
    dns["rebind.example"] = ["127.0.0.2"]
    (again,) = webhook_services.emit("run.finished", {"run_id": 2})
    assert not webhook_services.deliver(delivery_id=again)
    assert "127.0.0.2 is a loopback address" in WebhookDelivery.objects.get(pk=again).last_error
    assert rebound.requests == [] and len(allowed.requests) == 1


@pytest.mark.django_db
def test_redirects_are_not_followed(receivers, settings):
    target = receivers()
    first = receivers(status=302)
    first.location = f"http://127.0.0.1:{target.port}/steal"
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhook_services.create_webhook(url=f"http://127.0.0.1:{first.port}/h", events=["run.finished"])
    (delivery_id,) = webhook_services.emit("run.finished", {"run_id": 1})
    assert deliver_webhook.apply(args=(delivery_id,)).get() == {"delivered": False}
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.response_status) == ("failed", 302)
    assert "not followed" in delivery.last_error
    assert len(first.requests) == delivery.attempts and "X-Webhook-Signature" in first.requests[0]
    assert target.requests == []


@pytest.mark.django_db
def test_the_allow_list_lets_a_named_internal_host_through(receivers, dns, admin_api, settings):
    receiver = receivers()
    dns["hooks.internal"] = ["127.0.0.1"]
    url = f"http://hooks.internal:{receiver.port}/h"
    settings.WEBHOOK_ALLOWED_HOSTS = []
    refused = deliver_once(url, settings, [])
    assert "loopback" in refused.last_error and receiver.requests == []
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    created = admin_api.post(
        "/api/v1/webhooks/", {"url": url, "events": ["snapshot.ready"]}, format="json"
    )
    assert created.status_code == 201, created.content
    (delivery_id,) = webhook_services.emit("snapshot.ready", {"snapshot_id": 1})
    assert webhook_services.deliver(delivery_id=delivery_id)
    ((headers,),) = [receiver.requests]
    assert headers["Host"] == f"hooks.internal:{receiver.port}"
    assert headers["X-Webhook-Event"] == "snapshot.ready"
    settings.WEBHOOK_ALLOWED_HOSTS = ["other.internal"]
    answer = admin_api.post(
        "/api/v1/webhooks/", {"url": "http://localhost/h", "events": ["run.finished"]},
        format="json",
    )  # fmt: skip
    assert answer.status_code == 400
