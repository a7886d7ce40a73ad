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

import contextlib
import datetime
import http.client
import json
import logging
import random
import signal
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from django.conf import settings
from django.db import connections
from django.db.models import Exists, F, OuterRef
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
    """Write the deliveries these events owe (idempotent); the number written.

    An object's events ride on different topics (``payment.created`` on
    ``transactions.initiated``, ``payment.captured`` on ``transactions.completed``), and
    Kafka orders nothing across topics: the capture can be read first. So an event also
    owes the earlier events of its object that are not owed yet (their outbox rows were
    committed before it), and the per-object order of ``due()`` holds whichever topic
    comes first. When the earlier event's own message arrives, it owes nothing more.
    """
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
    if not listening:
        return 0
    events = [event for event in events if (event.merchant_id, event.livemode) in listening]
    latest: dict[str, int] = {}
    for event in events:
        latest[event.aggregate_id] = max(latest.get(event.aggregate_id, 0), event.sequence)
    since = min(endpoint.created_at for found in listening.values() for endpoint in found)
    updates = [aggregate for aggregate, sequence in latest.items() if sequence > 1]
    if updates:
        seen = {event.pk for event in events}
        events += [
            row
            for row in OutboxEvent.objects.filter(aggregate_id__in=updates, created_at__gte=since)
            if row.pk not in seen and row.sequence < latest[row.aggregate_id]
        ]
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
MAX_EXPONENT = 30  # 2^30 times the base is past any cap; a larger exponent would overflow


def backoff(attempts: int) -> datetime.timedelta:
    """Full jitter on ``base · 2^(attempts-1)``, capped at ``WEBHOOK_RETRY_MAX_DELAY``."""
    base = settings.WEBHOOK_RETRY_BASE.total_seconds()
    cap = settings.WEBHOOK_RETRY_MAX_DELAY.total_seconds()
    ceiling = min(cap, base * 2 ** min(MAX_EXPONENT, max(0, attempts - 1)))
    return datetime.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def due(limit: int = 50, exclude: set[Any] | frozenset[Any] = frozenset()) -> list[WebhookDelivery]:
    """Pending deliveries whose time has come and that are the earliest pending one of
    their object for their endpoint (per-object order), oldest due first.

    The order condition is in the query, before the limit: deliveries waiting behind an
    earlier one of their object never fill the batch (they would starve every endpoint).
    """
    now = timezone.now()
    earlier = WebhookDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        aggregate_id=OuterRef("aggregate_id"),
        sequence__lt=OuterRef("sequence"),
        status=WebhookDelivery.Status.PENDING,
    )
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__status=WebhookEndpoint.Status.ENABLED,
            endpoint__deleted=False,
        )
        .exclude(pk__in=list(exclude))
        .filter(~Exists(earlier))
        .select_related("endpoint")
        .order_by("next_attempt_at")[:limit]
    )


@db.atomic
def claim(delivery: WebhookDelivery) -> bool:
    """Take the delivery for one attempt (compare-and-set on its version); False: someone
    else did. The claim lasts past the attempt's hard deadline, so no second dispatcher
    sends it meanwhile."""
    now = timezone.now()
    lease = settings.WEBHOOK_TIMEOUT + datetime.timedelta(seconds=30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, version=delivery.version, status=WebhookDelivery.Status.PENDING
    ).update(
        next_attempt_at=now + lease,
        claimed_until=now + lease,
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


def _excerpt(raw: bytes) -> str:
    return redact_pans(raw[: EXCERPT * 4].decode("utf-8", "replace"))[:EXCERPT]


class _Pinned(http.client.HTTPConnection):
    """A connection to the address that was checked, not to whatever the name resolves to
    by the time the socket opens (DNS rebinding). TLS still checks the certificate
    against the URL's host name (SNI and verification), as any client would."""

    def __init__(self, host: str, port: int, address: str, tls: bool, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        if self.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


@db.outside_transaction
def post(url: str, body: bytes, headers: dict[str, str], *, livemode: bool) -> Answer:
    """One POST to the address ``check_url`` allowed, within ``WEBHOOK_TIMEOUT`` from the
    first byte sent to the last one read (a receiver answering one byte at a time is cut
    off too); never raises for what the receiver does. No redirect is followed."""
    started = time.monotonic()
    limit = settings.WEBHOOK_TIMEOUT.total_seconds()
    try:
        target = endpoints.destination(url, livemode=livemode)
    except endpoints.UrlRefused as refused:
        return Answer(None, 0, error=f"not called: {refused.message}"[:300])
    connection = _Pinned(target.host, target.port, target.address, target.tls, timeout=limit)
    # The hard deadline: at the limit the socket is shut, whatever it is waiting for.
    deadline = threading.Timer(limit, _shut, args=(connection,))
    deadline.start()
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read(EXCERPT * 4)
        code = response.status
        if time.monotonic() - started >= limit:
            return Answer(None, _elapsed(started), error="timed out")
        return Answer(code, _elapsed(started), _excerpt(raw))
    except (TimeoutError, OSError, ValueError, http.client.HTTPException) as exc:
        if isinstance(exc, TimeoutError) or time.monotonic() - started >= limit:
            return Answer(None, _elapsed(started), error="timed out")
        return Answer(
            None, _elapsed(started), error=redact_pans(str(exc) or type(exc).__name__)[:300]
        )
    finally:
        deadline.cancel()
        connection.close()


def _shut(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _attempt(delivery: WebhookDelivery) -> Answer:
    """The attempt; anything that goes wrong on our side is an answer too (recorded,
    retried, and in the end failing the delivery), never a delivery left claimed."""
    try:
        endpoint = delivery.endpoint
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
    except Exception as exc:
        logger.exception("webhook delivery %s could not be prepared", delivery.pk)
        return Answer(
            None, 0, error=f"not sent: PayFlow could not prepare it ({type(exc).__name__})"
        )
    return post(endpoint.url, body, headers, livemode=endpoint.livemode)


@db.atomic
def record(delivery: WebhookDelivery, answer: Answer) -> WebhookDelivery:
    """The attempt, and what it means for the delivery (and, after the span, the endpoint).

    A compare-and-set against the claim: if the delivery changed since (a resend, or a
    claim that lapsed and another dispatcher took), the attempt is recorded and the
    delivery left to whoever holds it now."""
    now = timezone.now()
    WebhookAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        response_excerpt=answer.excerpt,
        error=answer.error,
    )
    changes: dict[str, Any] = {
        "last_status_code": answer.status_code,
        "last_error": answer.error,
        "claimed_until": None,
    }
    first = delivery.first_attempt_at or now
    if answer.ok:
        changes.update(status=WebhookDelivery.Status.SUCCEEDED, delivered_at=now)
    elif now - first >= settings.WEBHOOK_RETRY_SPAN:
        changes["status"] = WebhookDelivery.Status.FAILED
    else:
        retry_at = now + backoff(delivery.attempts)
        changes["next_attempt_at"] = min(retry_at, first + settings.WEBHOOK_RETRY_SPAN)
    updated = WebhookDelivery.objects.filter(pk=delivery.pk, version=delivery.version).update(
        version=F("version") + 1, **changes
    )
    if updated and changes.get("status") == WebhookDelivery.Status.FAILED:
        what = f"HTTP {answer.status_code}" if answer.status_code else answer.error
        endpoints.webhook_endpoint_disable(
            endpoint_id=delivery.endpoint_id,
            reason=f"deliveries failed for {settings.WEBHOOK_RETRY_SPAN} (last: {what})",
        )
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


class Deliverer:
    """Attempts in a pool of threads, without waiting for a batch to finish: a slow
    receiver holds one thread (at most ``WEBHOOK_TIMEOUT``), not the others."""

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.workers = workers
        self.in_flight: dict[Any, Future[None]] = {}

    def _run(self, delivery: WebhookDelivery) -> None:
        try:
            deliver(delivery)
        except Exception:  # the database away: the claim lapses, the delivery is retried
            logger.exception("webhook delivery %s failed to run", delivery.pk)
        finally:
            connections.close_all()  # this thread's connection

    def tick(self) -> int:
        """Start due deliveries in free threads; the number started."""
        self.in_flight = {pk: f for pk, f in self.in_flight.items() if not f.done()}
        free = self.workers - len(self.in_flight)
        if free <= 0:
            return 0
        batch = due(limit=free, exclude=set(self.in_flight))
        for delivery in batch:
            self.in_flight[delivery.pk] = self.pool.submit(self._run, delivery)
        return len(batch)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


def deliver_due() -> int:
    """Attempt every due delivery now, one after the other (tests, one-off runs)."""
    batch = due()
    for delivery in batch:
        deliver(delivery)
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
    deliverer = Deliverer(settings.WEBHOOK_CONCURRENCY)
    logger.info("webhook dispatcher started (group %s)", settings.WEBHOOK_CONSUMER_GROUP)
    try:
        while not stop.is_set():
            _heartbeat()
            try:
                read = ingest(consumer, timeout=idle)
                sent = deliverer.tick()
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
        deliverer.shutdown()
        consumer.close()


def run_until_signalled() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(stop)
