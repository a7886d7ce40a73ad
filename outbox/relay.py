"""The relay: publish pending outbox events to Kafka, in order per aggregate, at least once.

For one relay partition at a time:
1. claim its lease by a conditional UPDATE, committed (so two workers, or a task delivered
   twice, never publish one partition at once);
2. read a batch of pending events; per aggregate keep only the run that starts at its
   oldest undelivered event and stops at the first one still backing off (a failing
   event holds back only later events of its own aggregate);
3. outside any transaction, produce them with the process's long-lived idempotent
   producer and wait for every delivery report;
4. in one transaction, mark exactly the delivered rows published (with Kafka partition
   and offset) and record failures with capped exponential backoff;
5. renew the lease and go on while there is work and time; release the lease.

A crash between 3 and 4 republishes those events on the next run: delivery is at least
once, and consumers deduplicate by event id (also in the ``event_id`` header).
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from django.conf import settings
from django.db import connection
from django.db.models import Min, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from prometheus_client import Counter

from outbox import events
from outbox.models import EventStatus, OutboxEvent, RelayLease
from payflow.platform import db, kafka

logger = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter("payflow_outbox_published_total", "Outbox events delivered to Kafka.")
EVENTS_FAILED = Counter(
    "payflow_outbox_failures_total", "Outbox delivery failures.", ["kind"]
)  # kind: transient (retried forever) or permanent (counts toward dead)
EVENTS_DEAD = Counter("payflow_outbox_dead_total", "Outbox events that became dead.")

#: Errors about the message itself: retrying cannot help, so after OUTBOX_MAX_ATTEMPTS the
#: event is dead. Any other error (broker down, timeouts) is retried forever with backoff.
PERMANENT_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._INVALID_ARG,
}


@dataclass
class Delivery:
    ok: bool
    partition: int | None = None
    offset: int | None = None
    error: str = ""
    permanent: bool = False


@dataclass
class RelayReport:
    partition: int
    claimed: bool = False
    published: int = 0
    failed: int = 0
    dead: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


# --- the producer: one per process, long-lived --------------------------------------

_producer_lock = threading.Lock()
_producer: Producer | None = None
_producer_bootstrap = ""


def producer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "message.timeout.ms": settings.OUTBOX_DELIVERY_TIMEOUT_MS,
        "log_level": 3,
    }


def get_producer() -> Producer:
    """The process's producer; a new one if the bootstrap address changed."""
    global _producer, _producer_bootstrap
    bootstrap = kafka.bootstrap_servers()
    with _producer_lock:
        if _producer is None or bootstrap != _producer_bootstrap:
            if _producer is not None:
                _producer.flush(1)
            _producer = Producer(producer_config(bootstrap))
            _producer_bootstrap = bootstrap
        return _producer


def reset_producer() -> None:
    global _producer
    with _producer_lock:
        _producer = None


# --- leases --------------------------------------------------------------------------


@db.atomic
def lease_claim(partition: int, owner: str) -> bool:
    """Take (or renew) the partition's lease if it is free, expired or ours. Committed."""
    now = timezone.now()
    RelayLease.objects.get_or_create(partition=partition)
    claimable = Q(owner="") | Q(expires_at__lt=now) | Q(owner=owner)
    until = now + datetime.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    return bool(
        RelayLease.objects.filter(claimable, partition=partition).update(
            owner=owner, expires_at=until
        )
    )


@db.atomic
def lease_release(partition: int, owner: str) -> None:
    RelayLease.objects.filter(partition=partition, owner=owner).update(owner="", expires_at=None)


# --- one batch -----------------------------------------------------------------------


#: What the relay reads of a pending event: one tuple per row, no model instance; the
#: payload as its stored JSON text, spliced into the envelope without being decoded.
BATCH_COLUMNS = (
    "id",
    "aggregate_id",
    "sequence",
    "next_attempt_at",
    "topic",
    "key",
    "event_type",
    "schema_version",
    "aggregate_type",
    "created_at",
    "attempts",
    "payload_json",
)


@dataclass(slots=True)
class PendingEvent:
    """A pending outbox event as the relay handles it (``BATCH_COLUMNS``), and what the
    attempt changes."""

    id: uuid.UUID
    aggregate_id: str
    sequence: int
    next_attempt_at: datetime.datetime | None
    topic: str
    key: str
    event_type: str
    schema_version: int
    aggregate_type: str
    created_at: datetime.datetime
    attempts: int
    payload_json: str
    status: str = EventStatus.PENDING
    last_error: str = ""
    published_at: datetime.datetime | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None

    def as_row(self) -> OutboxEvent:
        """The model row for a ``bulk_update`` of what the attempt changed."""
        return OutboxEvent(
            id=self.id,
            status=self.status,
            attempts=self.attempts,
            last_error=self.last_error,
            next_attempt_at=self.next_attempt_at,
        )


def next_batch(partition: int, batch_size: int) -> list[PendingEvent]:
    """Pending events of the partition that may go now, in order per aggregate."""
    now = timezone.now()
    rows = (
        OutboxEvent.objects.filter(relay_partition=partition, status=EventStatus.PENDING)
        .order_by("id")
        .annotate(payload_json=Cast("payload", output_field=TextField()))
        .values_list(*BATCH_COLUMNS)[:batch_size]
    )
    candidates = [PendingEvent(*row) for row in rows]
    if not candidates:
        return []
    aggregates = {event.aggregate_id for event in candidates}
    # The oldest undelivered (pending or dead) sequence of each aggregate: nothing may
    # overtake it, even if it is not in this batch.
    oldest = dict(
        OutboxEvent.objects.filter(aggregate_id__in=aggregates)
        .exclude(status=EventStatus.PUBLISHED)
        .values("aggregate_id")
        .annotate(first=Min("sequence"))
        .values_list("aggregate_id", "first")
    )
    by_aggregate: dict[str, list[PendingEvent]] = defaultdict(list)
    for event in candidates:
        by_aggregate[event.aggregate_id].append(event)
    ready: list[PendingEvent] = []
    for aggregate_id, group in by_aggregate.items():
        group.sort(key=lambda event: event.sequence)
        if group[0].sequence != oldest.get(aggregate_id):
            continue  # an older event of this aggregate is dead or not in this batch
        for event in group:
            if event.next_attempt_at and event.next_attempt_at > now:
                break  # backing off: it and everything after it wait
            ready.append(event)
    ready.sort(key=lambda event: event.id)
    return ready


def _error_delivery(error: KafkaError | None, text: str = "") -> Delivery:
    code = error.code() if error is not None else None
    return Delivery(ok=False, error=(text or str(error))[:500], permanent=code in PERMANENT_ERRORS)


@db.outside_transaction
def publish(producer: Producer, batch: list[PendingEvent]) -> dict[Any, Delivery]:
    """Produce the batch and wait for every delivery report. Never inside a transaction."""
    results: dict[Any, Delivery] = {}
    blocked: set[str] = set()  # aggregates whose earlier event failed to enqueue
    expected = 0  # events handed to the producer or failed at once: each gets one result

    def on_delivery(event_id):
        def report(error, message):
            if error is None:
                results[event_id] = Delivery(True, message.partition(), message.offset())
            else:
                results[event_id] = _error_delivery(error)

        return report

    for event in batch:
        if event.aggregate_id in blocked:
            continue
        value = events.envelope_bytes(event)
        expected += 1
        try:
            _produce(producer, event, value, on_delivery(event.id))
        except KafkaException as exc:
            results[event.id] = _error_delivery(exc.args[0])
            blocked.add(event.aggregate_id)
    deadline = time.monotonic() + settings.OUTBOX_DELIVERY_TIMEOUT_MS / 1000 + 5
    while len(results) < expected and time.monotonic() < deadline:
        producer.flush(1)
    return results


def _produce(producer: Producer, event: PendingEvent, value: bytes, callback) -> None:
    for _ in range(100):
        try:
            producer.produce(
                event.topic,
                key=event.key.encode(),
                value=value,
                headers=events.kafka_headers(event),
                on_delivery=callback,
            )
            return
        except BufferError:
            producer.poll(0.1)  # the local queue is full: let deliveries drain
    raise KafkaException(KafkaError(KafkaError._QUEUE_FULL))


def _backoff(attempts: int) -> datetime.timedelta:
    ceiling = min(
        settings.OUTBOX_RETRY_MAX_SECONDS, settings.OUTBOX_RETRY_BASE_SECONDS * 2**attempts
    )
    return datetime.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


@db.atomic
def record_results(batch: list[PendingEvent], results: dict[Any, Delivery]) -> tuple[int, int, int]:
    """Mark delivered rows published and failed rows for retry (or dead). One transaction."""
    now = timezone.now()
    published, failed, dead = [], [], []
    for event in batch:
        delivery = results.get(event.id)
        if delivery is None:
            continue  # not attempted (held back behind a failure): untouched
        event.attempts += 1
        if delivery.ok:
            event.status, event.published_at = EventStatus.PUBLISHED, now
            event.kafka_partition, event.kafka_offset = delivery.partition, delivery.offset
            published.append(event)
            continue
        event.last_error = delivery.error
        event.next_attempt_at = now + _backoff(event.attempts)
        if delivery.permanent and event.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            event.status = EventStatus.DEAD
            dead.append(event)
        else:
            failed.append(event)
    for start in range(0, len(published), MARK_CHUNK):
        _mark_published(published[start : start + MARK_CHUNK], now)
    OutboxEvent.objects.bulk_update(
        [event.as_row() for event in failed + dead],
        ["status", "attempts", "last_error", "next_attempt_at"],
    )
    EVENTS_PUBLISHED.inc(len(published))
    for event in failed + dead:
        EVENTS_FAILED.labels(kind="permanent" if results[event.id].permanent else "transient").inc()
    EVENTS_DEAD.inc(len(dead))
    for event in dead:
        logger.error(
            "outbox event %s is dead after %s attempts: %s",
            event.id,
            event.attempts,
            event.last_error,
        )
    return len(published), len(failed), len(dead)


#: Rows per UPDATE when marking events published (5 parameters a row).
MARK_CHUNK = 1000


def _mark_published(events_: list[PendingEvent], now: datetime.datetime) -> None:
    """Mark delivered events published in one UPDATE: the shared fields set once, each row's
    Kafka partition and offset joined in from a derived table of (id, partition, offset).
    (Django's ``bulk_update`` builds one expression per row and field: 91% of a drain's
    time; a ``CASE id WHEN`` over the batch costs MariaDB twice the join.)"""
    if not events_:
        return
    meta = OutboxEvent._meta
    quote = connection.ops.quote_name
    table, key = quote(meta.db_table), quote("id")
    rows = " UNION ALL ".join(["SELECT %s AS id, %s AS part, %s AS off"] * len(events_))
    assign = (
        f"{quote('status')} = %s, {quote('published_at')} = %s, "
        f"{quote('attempts')} = {table}.{quote('attempts')} + 1, "
        f"{quote('kafka_partition')} = d.part, {quote('kafka_offset')} = d.off"
    )
    shared = [
        EventStatus.PUBLISHED.value,
        meta.get_field("published_at").get_db_prep_value(now, connection),
    ]
    per_row = [
        value
        for event in events_
        for value in (
            meta.pk.get_db_prep_value(event.id, connection),
            event.kafka_partition,
            event.kafka_offset,
        )
    ]
    if connection.vendor == "mysql":  # MariaDB: UPDATE ... JOIN, the derived table first
        sql = f"UPDATE {table} JOIN ({rows}) d ON {table}.{key} = d.id SET {assign}"  # noqa: S608
        params = per_row + shared
    else:  # SQLite, make run's database: UPDATE ... FROM, the assignments first
        sql = f"UPDATE {table} SET {assign} FROM ({rows}) d WHERE {table}.{key} = d.id"  # noqa: S608
        params = shared + per_row
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != len(events_):
            raise RuntimeError(
                f"marking {len(events_)} outbox events published updated {cursor.rowcount} rows"
            )


def relay_partition(partition: int, *, time_budget: float = 10.0) -> RelayReport:
    """Publish what is pending in one partition, under its lease, for up to ``time_budget``."""
    report = RelayReport(partition=partition)
    owner = f"{uuid.uuid4().hex[:12]}@{threading.get_ident()}"
    if not lease_claim(partition, owner):
        return report
    report.claimed = True
    started = time.monotonic()
    try:
        while time.monotonic() - started < time_budget:
            batch = next_batch(partition, settings.OUTBOX_BATCH_SIZE)
            if not batch:
                break
            results = publish(get_producer(), batch)
            published, failed, dead = record_results(batch, results)
            report.batches += 1
            report.published += published
            report.failed += failed
            report.dead += dead
            if published == 0 or not lease_claim(partition, owner):
                break  # nothing got through (retry later), or the lease was lost
    except kafka.KafkaUnavailable as exc:
        report.errors.append(str(exc))
    finally:
        lease_release(partition, owner)
    return report


def relay_round(partitions: list[int]) -> list[RelayReport]:
    """One batch of each partition, all in one go (the relay process's round): each
    partition's lease claimed, its batch read, every event of every batch produced and
    their delivery reports awaited once, one transaction recording them all, the leases
    released. Per aggregate order is as in ``relay_partition`` (an aggregate lives in one
    partition). A partition whose lease another relay holds is left to it."""
    owner = f"{uuid.uuid4().hex[:12]}@{threading.get_ident()}"
    reports = {partition: RelayReport(partition=partition) for partition in partitions}
    held: list[int] = []
    try:
        batch: list[PendingEvent] = []
        partition_of: dict[Any, int] = {}
        for partition in partitions:
            if not lease_claim(partition, owner):
                continue
            held.append(partition)
            reports[partition].claimed = True
            for event in next_batch(partition, settings.OUTBOX_BATCH_SIZE):
                batch.append(event)
                partition_of[event.id] = partition
        if batch:
            results = publish(get_producer(), batch)
            record_results(batch, results)
            for event_id, delivery in results.items():
                report = reports[partition_of[event_id]]
                report.batches = 1
                if delivery.ok:
                    report.published += 1
                else:
                    report.failed += 1
    except kafka.KafkaUnavailable as exc:
        for partition in held:
            reports[partition].errors.append(str(exc))
    finally:
        for partition in held:
            lease_release(partition, owner)
    return list(reports.values())


def relay_all(*, time_budget: float = 10.0) -> list[RelayReport]:
    """Sweep every partition once (by hand: ``outbox.relay_sweep``; tests)."""
    return [
        relay_partition(partition, time_budget=time_budget / settings.OUTBOX_RELAY_PARTITIONS)
        for partition in range(settings.OUTBOX_RELAY_PARTITIONS)
    ]


# --- the relay process -------------------------------------------------------------------


def partitions_pending() -> list[int]:
    """The relay partitions holding a pending event: one index-only read (the
    ``outbox_relay_queue`` index leads with the partition and the status)."""
    pending = OutboxEvent.objects.filter(status=EventStatus.PENDING)
    return sorted(set(pending.values_list("relay_partition", flat=True).distinct()))


#: How long the relay process leaves a partition alone after a round there published
#: nothing although it held pending events (they back off, or wait behind a dead event of
#: their aggregate): it is not polled every few milliseconds meanwhile. A new event in that
#: partition waits at most this long.
HELD_BACK_WAIT = 1.0
#: The longest wait after failures (a partition's, or a whole round's).
FAILURE_WAIT_MAX = 30.0


def _failure_wait(failures: int) -> float:
    return min(FAILURE_WAIT_MAX, 0.5 * 2 ** min(failures, 10))


@dataclass
class RelayLoop:
    """``manage.py outbox_relay``: the one way events leave the outbox (no message is sent
    per transaction). Each round reads which partitions hold pending events and relays
    those, each under its lease (two relay processes share the partitions, never publish
    one at once). After a round that published, the next starts at once; idle rounds
    wait twice as long each time, from 5 ms up to ``OUTBOX_RELAY_IDLE_INTERVAL``.

    A partition is skipped for a while on its own: ``HELD_BACK_WAIT`` after a round that
    published nothing of its pending events, and a growing wait after it raised (any
    error: the others go on; the first failures are logged with their traceback)."""

    min_interval: float = 0.005
    interval: float = 0.005
    rounds: int = 0
    published: int = 0
    not_before: dict[int, float] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)

    def step(self) -> int:
        """One round: relay every partition with pending events that is not waiting; how
        many events were published. Raises only if the pending partitions cannot be read."""
        published = 0
        now = time.monotonic()
        due = [p for p in partitions_pending() if self.not_before.get(p, 0.0) <= now]
        if not due:
            self.rounds += 1
            return 0
        try:
            # the common case: one batch of every due partition, one wait for Kafka
            reports = relay_round(due)
        except Exception:
            # something failed: each partition on its own, so one cannot hold back the rest
            logger.warning("outbox relay round failed; relaying its partitions one by one")
            connection.close()
            reports = None
        if reports is not None:
            for report in reports:
                self._after(report, now)
                published += report.published
            self.rounds += 1
            self.published += published
            return published
        for partition in due:
            try:
                report = relay_partition(partition, time_budget=1.0)
            except Exception:
                failures = self.failures.get(partition, 0) + 1
                self.failures[partition] = failures
                self.not_before[partition] = now + _failure_wait(failures)
                if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th … failure
                    logger.exception(
                        "outbox relay partition %s failed (%d times in a row); it waits "
                        "%.1f s, the other partitions go on",
                        partition,
                        failures,
                        _failure_wait(failures),
                    )
                connection.close()  # a broken connection is opened afresh
                continue
            self._after(report, now)
            published += report.published
        self.rounds += 1
        self.published += published
        return published

    def _after(self, report: RelayReport, now: float) -> None:
        """A partition that published goes on at once; one that held pending events but
        published none of them (backing off, behind a dead event, Kafka refusing) waits."""
        self.failures.pop(report.partition, None)
        if report.published:
            self.not_before.pop(report.partition, None)
        elif report.claimed:
            self.not_before[report.partition] = now + HELD_BACK_WAIT

    def next_wait(self, published: int) -> float:
        if published:
            self.interval = self.min_interval
            return 0.0
        wait = self.interval
        self.interval = min(self.interval * 2, settings.OUTBOX_RELAY_IDLE_INTERVAL)
        return wait


def run_forever(loop: RelayLoop, *, stop, heartbeat=None) -> None:
    """Run rounds until ``stop()``. A round that cannot even read the pending partitions
    (the database down) is retried after a growing wait, logged at its 1st, 2nd, 4th …
    time; the heartbeat is touched only after a round that ran, so a health check sees a
    relay that cannot work."""
    failed_rounds = 0
    while not stop():
        try:
            published = loop.step()
        except Exception:
            failed_rounds += 1
            wait = _failure_wait(failed_rounds)
            if failed_rounds & (failed_rounds - 1) == 0:
                logger.exception(
                    "outbox relay round failed (%d in a row); next try in %.1f s",
                    failed_rounds,
                    wait,
                )
            connection.close()  # a broken connection is opened afresh next round
            _sleep_unless(stop, wait)
            continue
        failed_rounds = 0
        if heartbeat is not None:
            heartbeat()
        wait = loop.next_wait(published)
        if wait:
            time.sleep(wait)


def _sleep_unless(stop, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
