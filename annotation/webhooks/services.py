"""Webhooks: ``judgment.created``, ``snapshot.ready``, ``run.finished``.

``emit(event, data, project_id=…)`` stores one ``WebhookDelivery`` per subscribed active hook
and, once the surrounding transaction commits, queues ``annotation.deliver_webhook`` on Celery,
which POSTs the JSON body and retries with exponential backoff.

Every request carries ``X-Webhook-Event``, ``X-Webhook-Id`` (the event id; receivers dedupe on
it) and ``X-Webhook-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``;
``verify_signature`` is the receiver's check (constant-time, with a replay window).

A hook's URL must reach a public host (``common.outbound``): checked when it is saved, and
again on every delivery against the addresses its host resolves to then, which are the ones
connected to. Redirects are not followed (a 3xx is a failed attempt).
``settings.WEBHOOK_ALLOWED_HOSTS`` lets named internal hosts through.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from urllib3.exceptions import HTTPError

from annotation.datasets.exports.pseudonyms import Pseudonymizer
from annotation.models import Webhook, WebhookDelivery
from common import background, outbound

logger = logging.getLogger(__name__)
EVENTS = tuple(Webhook.Event.values)
TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 6


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance: int = 300) -> bool:
    """True when ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def body_of(delivery: WebhookDelivery) -> bytes:
    envelope = {
        "id": str(delivery.event_id),
        "event": delivery.event,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


def _enqueue(delivery_id: int) -> None:
    background.send("annotation.deliver_webhook", delivery_id, fail_silently=True)


_SUBSCRIBERS = f"""
    SELECT id, events FROM {Webhook._meta.db_table}
    WHERE is_active AND (project_id IS NULL OR project_id = %s) ORDER BY id"""


def _subscribers(event: str, project_id: int | None) -> list[int]:
    """Ids of the active hooks for ``event`` in the project (or every project). Plain SQL:
    it runs with every judgment, where the ORM's query building cost more than the query."""
    with connection.cursor() as cursor:
        cursor.execute(_SUBSCRIBERS, [project_id])
        rows = cursor.fetchall()
    return [pk for pk, events in rows if event in json.loads(events or "[]")]


def emit(event: str, data: dict, *, project_id: int | None = None) -> list[int]:
    """Record deliveries for every active hook subscribed to ``event``; queue them on commit."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    hooks = _subscribers(event, project_id)
    if not hooks:
        return []
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(webhook_id=hook, event=event, event_id=uuid.uuid4(), payload=data)
        for hook in hooks
    )
    ids = [d.pk for d in deliveries]
    for delivery_id in ids:
        transaction.on_commit(partial(_enqueue, delivery_id))
    return ids


def deliver(*, delivery_id: int) -> bool:
    """One attempt: POST the signed body. True when the endpoint answered 2xx."""
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    if delivery.status == WebhookDelivery.Status.DELIVERED:
        return True
    hook = delivery.webhook
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "governing-llms-webhooks/1",
        "X-Webhook-Event": delivery.event,
        "X-Webhook-Id": str(delivery.event_id),
        "X-Webhook-Signature": sign(hook.secret, int(time.time()), body),
    }
    status, error = None, ""
    try:
        answer = outbound.post(
            hook.url, body, headers, timeout=TIMEOUT_SECONDS, allowed=allowed_hosts()
        )
    except outbound.RefusedURLError as exc:
        error = f"refused: {exc}"
    except (HTTPError, OSError, ValueError) as exc:
        error = str(exc)[:1000]
    else:
        status = answer.status
        if 300 <= status < 400:
            error = f"HTTP {status}: redirect to {answer.location[:500]!r} not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
    ok = status is not None and 200 <= status < 300
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        attempts=F("attempts") + 1,
        response_status=status,
        last_error=error,
        status=WebhookDelivery.Status.DELIVERED if ok else WebhookDelivery.Status.PENDING,
        delivered_at=timezone.now() if ok else None,
    )
    return ok


def allowed_hosts() -> list[str]:
    """Internal hosts (names, addresses, networks) hooks may reach: closed deployments."""
    return settings.WEBHOOK_ALLOWED_HOSTS


def check_url(url: str) -> None:
    """Refuse (``outbound.RefusedURLError``, a 400) a URL that is no http(s) URL to a public
    or allowed host."""
    outbound.check_url(url, allowed=allowed_hosts())


def give_up(*, delivery_id: int) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(
        status=WebhookDelivery.Status.DELIVERED
    ).update(status=WebhookDelivery.Status.FAILED)


def retry_delay(attempt: int) -> int:
    """Seconds before retry ``attempt`` (0-based): 10 s, 20 s, 40 s … capped at one hour."""
    base = getattr(settings, "WEBHOOK_RETRY_BASE_SECONDS", 10)
    return int(min(base * 2**attempt, 3600))


# ---------------------------------------------------------------- from the event bus


def forward(event: str, payload: dict) -> list[int]:
    """Event-bus handler (after commit): ``event`` to its subscribed hooks, the annotator as a
    pseudonym, never an id or a username."""
    data = dict(payload)
    if data.get("annotator_id") is not None:
        data["annotator_id"] = Pseudonymizer(settings.PSEUDONYM_KEY)(data["annotator_id"])
    return emit(event, data, project_id=data.get("project_id"))


def create_webhook(
    *,
    url: str,
    events: list[str],
    secret: str | None = None,
    name: str = "",
    project=None,
    is_active: bool = True,
    created_by=None,
) -> Webhook:
    """A subscription; the secret is generated when not given (shown once by the API)."""
    import secrets

    unknown = set(events) - set(EVENTS)
    if unknown or not events:
        raise ValueError(f"events must be among {', '.join(EVENTS)}")
    check_url(url)
    return Webhook.objects.create(
        url=url, events=sorted(set(events)), secret=secret or secrets.token_hex(32), name=name,
        project=project, is_active=is_active, created_by=created_by,
    )  # fmt: skip
