"""The webhook dispatcher: reads the events from Kafka, owes them to endpoints, delivers.

One long-running process (``manage.py webhook_dispatcher``; any number of copies):

1. **Ingest.** A Kafka consumer in the group ``WEBHOOK_CONSUMER_GROUP`` reads the
   ``transactions.*`` topics (what the outbox relay published, so a webhook rides on the
   outbox's guarantee: every committed change is published at least once, a rolled-back
   one never). For a batch of messages it writes, in one transaction, a ``WebhookDelivery``
   for every enabled endpoint of the event's merchant and mode that subscribes to its type
   and existed when the event was made (unique per endpoint and event: a message read twice
   owes the event once), and only then commits the consumer's offsets. A crash between the
   two reads the batch again and owes nothing twice.
2. **Deliver.** Due deliveries are claimed by a compare-and-set (the claim pushes
   ``next_attempt_at`` past the timeout, so a second dispatcher leaves them alone and a
   crashed one's claim lapses), POSTed outside any transaction with the event's API body
   (``payflow.api.events``, what ``GET /v1/events/{id}`` answers) signed
   (``payflow.webhooks.signing``), and the attempt is recorded. A 2xx within
   ``WEBHOOK_TIMEOUT`` is success; anything else is retried with exponential backoff and
   full jitter up to ``WEBHOOK_RETRY_MAX_DELAY``, for ``WEBHOOK_RETRY_SPAN`` (3 days)
   after the first attempt, when the delivery fails for good and the endpoint is disabled
   with the reason (the admin shows it; the merchant re-enables it).

**Order.** Per object and endpoint: a delivery waits while an earlier event (lower
version) of the same object to the same endpoint is pending, so a receiver sees
``payment.created`` before ``payment.captured`` unless the earlier one failed for good.
Events of different objects are not ordered. Delivery is at least once: a receiver
deduplicates by the event's ``id`` (also sent as ``PayFlow-Event-Id``).
"""

from __future__ import annotations

import datetime
import json
import logging
import random
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from django.conf import settings
from django.db import connections
from django.db.models import F, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from ledger.events import Topic
from outbox.models import OutboxEvent
from payflow.api.events import event_body
from payflow.logging import redact_pans
from payflow.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payflow.platform import db, kafka
from payflow.webhooks import endpoints, signing

logger = logging.getLogger(__name__)

TOPICS = (Topic.TRANSACTIONS_INITIATED, Topic.TRANSACTIONS_COMPLETED, Topic.TRANSACTIONS_FAILED)
USER_AGENT = "PayFlow-Webhooks/1"
EXCERPT = 500


# --- ingest -------------------------------------------------------------------------------
def _event_id(message: Any) -> uuid.UUID | None:
    for name, value in message.headers() or []:
        if name == "event_id" and value:
            try:
                return uuid.UUID(value.decode())
            except (ValueError, UnicodeDecodeError):
                return None
    try:
        return uuid.UUID(json.loads(message.value())["event_id"])
    except (ValueError, KeyError, TypeError):
        return None


@db.atomic
def owe(event_ids: list[uuid.UUID]) -> int:
    """Write the deliveries these events owe (idempotent); the number written."""
    events = list(OutboxEvent.objects.filter(pk__in=event_ids))
    if len(events) < len(set(event_ids)):
        logger.warning(
            "webhooks: %d consumed event(s) have no outbox row any more; nothing owed for them",
            len(set(event_ids)) - len(events),
        )
    merchants = {event.merchant_id for event in events if event.merchant_id}
    listening: dict[tuple[Any, bool], list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(
        merchant_id__in=merchants, status=WebhookEndpoint.Status.ENABLED, deleted=False
    ):
        listening.setdefault((endpoint.merchant_id, endpoint.livemode), []).append(endpoint)
    owed = [
        WebhookDelivery(
            endpoint=endpoint,
            event_id=event.pk,
            event_type=event.event_type,
            aggregate_id=event.aggregate_id,
            sequence=event.sequence,
            next_attempt_at=event.created_at,
            created_at=timezone.now(),
        )
        for event in events
        for endpoint in listening.get((event.merchant_id, event.livemode), [])
        if endpoints.subscribed(endpoint, event.event_type)
        and event.created_at >= endpoint.created_at
    ]
    if owed:
        WebhookDelivery.objects.bulk_create(owed, ignore_conflicts=True)
    return len(owed)


def consumer_config() -> dict[str, Any]:
    return kafka.client_config(
        **{
            "group.id": settings.WEBHOOK_CONSUMER_GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )


def ingest(consumer: Consumer, *, timeout: float = 0.2, batch: int = 500) -> int:
    """One batch from Kafka into deliveries, then the offsets committed; messages read."""
    messages = consumer.consume(num_messages=batch, timeout=timeout)
    good = [message for message in messages if not message.error()]
    for message in messages:
        error = message.error()
        if error is not None and error.fatal():
            raise KafkaException(error)
    if not good:
        return 0
    ids = [event_id for event_id in map(_event_id, good) if event_id is not None]
    try:
        owe(ids)
    except Exception:
        # Not recorded: rewind to the batch's first messages, so the next read gets them
        # again (the consumer's position already moved past them; nothing was committed).
        _rewind(consumer, good)
        raise
    consumer.commit(asynchronous=False)  # only after the deliveries are recorded
    return len(good)


def _rewind(consumer: Consumer, messages: list[Any]) -> None:
    first: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic(), message.partition())
        first[key] = min(first.get(key, message.offset()), message.offset())
    for (topic, partition), offset in first.items():
        consumer.seek(TopicPartition(topic, partition, offset))


# --- deliver ------------------------------------------------------------------------------
def backoff(attempts: int) -> datetime.timedelta:
    """Full jitter on ``base · 2^(attempts-1)``, capped at ``WEBHOOK_RETRY_MAX_DELAY``."""
    base = settings.WEBHOOK_RETRY_BASE.total_seconds()
    cap = settings.WEBHOOK_RETRY_MAX_DELAY.total_seconds()
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return datetime.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def due(limit: int = 50) -> list[WebhookDelivery]:
    """Pending deliveries whose time has come, each the earliest pending one of its object
    for its endpoint (per-object order)."""
    now = timezone.now()
    candidates = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__status=WebhookEndpoint.Status.ENABLED,
            endpoint__deleted=False,
        )
        .select_related("endpoint")
        .order_by("next_attempt_at")[:limit]
    )
    if not candidates:
        return []
    earliest = {
        (row["endpoint_id"], row["aggregate_id"]): row["first"]
        for row in WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            endpoint_id__in={d.endpoint_id for d in candidates},
            aggregate_id__in={d.aggregate_id for d in candidates},
        )
        .values("endpoint_id", "aggregate_id")
        .annotate(first=Min("sequence"))
    }
    return [d for d in candidates if d.sequence <= earliest[(d.endpoint_id, d.aggregate_id)]]


@db.atomic
def claim(delivery: WebhookDelivery) -> bool:
    """Take the delivery for one attempt (compare-and-set); False: someone else did."""
    now = timezone.now()
    lease = settings.WEBHOOK_TIMEOUT + datetime.timedelta(seconds=30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, version=delivery.version, status=WebhookDelivery.Status.PENDING
    ).update(
        next_attempt_at=now + lease,
        attempts=F("attempts") + 1,
        first_attempt_at=Coalesce(F("first_attempt_at"), now),
        version=F("version") + 1,
    )
    if claimed:
        delivery.refresh_from_db()
    return bool(claimed)


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead anywhere (an internal address): a 3xx is an answer, not a hop.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _excerpt(raw: bytes) -> str:
    return redact_pans(raw[: EXCERPT * 4].decode("utf-8", "replace"))[:EXCERPT]


@db.outside_transaction
def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST with the configured timeout; never raises for what the receiver does."""
    started = time.monotonic()
    # http(s) only: check_url refused any other scheme before this is called.
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT.total_seconds()) as response:
            raw = response.read(EXCERPT * 4)
            code = response.status
        return Answer(code, _elapsed(started), _excerpt(raw))
    except urllib.error.HTTPError as refused:
        raw = refused.read(EXCERPT * 4) if refused.fp else b""
        return Answer(refused.code, _elapsed(started), _excerpt(raw))
    except (TimeoutError, OSError, ValueError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        text = "timed out" if isinstance(reason, TimeoutError) else redact_pans(str(reason))
        return Answer(None, _elapsed(started), error=text[:300])


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _attempt(delivery: WebhookDelivery) -> Answer:
    endpoint = delivery.endpoint
    try:
        endpoints.check_url(endpoint.url, livemode=endpoint.livemode)
    except endpoints.UrlRefused as refused:
        return Answer(None, 0, error=f"not called: {refused.message}"[:300])
    event = OutboxEvent.objects.filter(pk=delivery.event_id).first()
    if event is None:
        return Answer(None, 0, error="the event is no longer available")
    body = json.dumps(event_body(event), separators=(",", ":")).encode()
    now = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "PayFlow-Event-Id": f"evt_{delivery.event_id.hex}",
        signing.HEADER: signing.header(
            body, endpoints.signing_secrets(endpoint, now=now), timestamp=int(now.timestamp())
        ),
    }
    return post(endpoint.url, body, headers)


@db.atomic
def record(delivery: WebhookDelivery, answer: Answer) -> WebhookDelivery:
    """The attempt, and what it means for the delivery (and, after the span, the endpoint)."""
    now = timezone.now()
    WebhookAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        response_excerpt=answer.excerpt,
        error=answer.error,
    )
    changes: dict[str, Any] = {"last_status_code": answer.status_code, "last_error": answer.error}
    first = delivery.first_attempt_at or now
    if answer.ok:
        changes.update(status=WebhookDelivery.Status.SUCCEEDED, delivered_at=now)
    elif now - first >= settings.WEBHOOK_RETRY_SPAN:
        changes["status"] = WebhookDelivery.Status.FAILED
        what = f"HTTP {answer.status_code}" if answer.status_code else answer.error
        endpoints.webhook_endpoint_disable(
            endpoint_id=delivery.endpoint_id,
            reason=f"deliveries failed for {settings.WEBHOOK_RETRY_SPAN} (last: {what})",
        )
    else:
        changes["next_attempt_at"] = min(
            now + backoff(delivery.attempts), first + settings.WEBHOOK_RETRY_SPAN
        )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(version=F("version") + 1, **changes)
    delivery.refresh_from_db()
    return delivery


def deliver(delivery: WebhookDelivery) -> WebhookDelivery | None:
    """Claim, attempt, record one delivery; None if another dispatcher had it."""
    if not claim(delivery):
        return None
    answer = _attempt(delivery)
    outcome = record(delivery, answer)
    logger.info(
        "webhook %s %s → %s: %s in %d ms (attempt %d)",
        delivery.event_type,
        delivery.event_id,
        delivery.endpoint_id,
        answer.status_code or answer.error,
        answer.latency_ms,
        outcome.attempts,
    )
    return outcome


def _deliver_in_thread(delivery: WebhookDelivery) -> None:
    try:
        deliver(delivery)
    except Exception:  # one bad delivery must not stop the others
        logger.exception("webhook delivery %s failed to run", delivery.pk)
    finally:
        connections.close_all()  # this thread's connection


def deliver_due(pool: ThreadPoolExecutor | None = None) -> int:
    batch = due()
    if pool is None:
        for delivery in batch:
            deliver(delivery)
    else:
        list(pool.map(_deliver_in_thread, batch))
    return len(batch)


# --- the process --------------------------------------------------------------------------
def _consumer(stop: threading.Event) -> Consumer | None:
    # The embedded broker may start after us (``make run``): wait for its address.
    warned = False
    while not stop.is_set():
        try:
            config = consumer_config()
        except kafka.KafkaUnavailable as exc:
            if not warned:
                logger.warning("webhook dispatcher waiting for Kafka: %s", exc)
                warned = True
            stop.wait(1)
            continue
        consumer = Consumer(config)
        consumer.subscribe([kafka.topic(name) for name in TOPICS])
        return consumer
    return None


def _heartbeat() -> None:
    path = settings.WEBHOOK_HEARTBEAT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def run(stop: threading.Event, *, idle: float = 0.2) -> None:
    """Ingest and deliver until ``stop`` is set (SIGTERM sets it)."""
    consumer = _consumer(stop)
    if consumer is None:
        return
    pool = ThreadPoolExecutor(max_workers=settings.WEBHOOK_CONCURRENCY)
    logger.info("webhook dispatcher started (group %s)", settings.WEBHOOK_CONSUMER_GROUP)
    try:
        while not stop.is_set():
            _heartbeat()
            try:
                read = ingest(consumer, timeout=idle)
                sent = deliver_due(pool)
            except KafkaException:
                raise  # fatal for the consumer: the process restarts (compose, honcho)
            except Exception:
                # The database away (a failover): nothing was committed to Kafka, nothing
                # is lost; try again shortly.
                logger.exception("webhook dispatcher: a loop failed; retrying in 1 s")
                stop.wait(1)
                continue
            if not read and not sent:
                stop.wait(idle)
    finally:
        pool.shutdown(wait=True)
        consumer.close()


def run_until_signalled() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(stop)
