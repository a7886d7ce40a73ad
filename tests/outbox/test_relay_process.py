"""``manage.py outbox_relay`` as a real process (issue 17: no Celery message per request;
the relay is a long-running loop, leased per partition): events reach the Kafka-protocol
broker without any nudge, two copies share the partitions without publishing an event
twice, and a copy killed with SIGKILL mid-backlog loses nothing once another runs."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from django.db.models import Count

from outbox.models import EventStatus, OutboxEvent
from tests.infra.gunicorn import database_url
from tests.infra.processes import ManageProcess
from tests.ledger.conftest import pay
from tests.outbox.conftest import TRANSACTION_TOPICS, envelopes

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def relay(infra_dir, broker, **env: str) -> ManageProcess:
    return ManageProcess(
        infra_dir / f"relay-{uuid.uuid4().hex[:6]}",
        ["outbox_relay"],
        {"DATABASE_URL": database_url(), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, **env},
    ).start()


def wait_for(condition, timeout: float, what: str, *processes: ManageProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for process in processes:
            assert process.process.poll() is None, process.log_tail()
        time.sleep(0.01)
    tails = "\n".join(process.log_tail() for process in processes)
    pytest.fail(f"{what} within {timeout} s\n{tails}")


def pending() -> int:
    return OutboxEvent.objects.filter(status=EventStatus.PENDING).count()


def test_a_payments_events_reach_kafka_from_the_relay_process_alone(merchant, broker, infra_dir):
    process = relay(infra_dir, broker)
    try:
        payment = pay(merchant, amount=4_200)
        wait_for(lambda: pending() == 0, 30, "every event published", process)
        published = list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)))
        assert {event.status for event in published} == {EventStatus.PUBLISHED}
        lag = max((e.published_at - e.created_at).total_seconds() for e in published)
        assert lag < 5, lag  # polled, not swept once a second by beat
    finally:
        process.stop()
    received, _ = envelopes(broker, TRANSACTION_TOPICS, expected=len(published))
    assert {r["event_id"] for r in received} >= {str(e.pk) for e in published}


def test_two_relays_share_the_partitions_and_a_killed_one_loses_nothing(
    merchant, broker, infra_dir
):
    for number in range(60):
        pay(merchant, amount=1_000 + number)
    total = pending()
    assert total >= 180
    # small batches, so the kill lands while the backlog drains
    first = relay(infra_dir, broker, OUTBOX_BATCH_SIZE="3")
    second = relay(infra_dir, broker, OUTBOX_BATCH_SIZE="3")
    try:
        wait_for(lambda: pending() < total, 60, "a first batch published", first, second)
        first.kill()
        remaining_at_kill = pending()
        wait_for(lambda: pending() == 0, 120, "the backlog drained by the survivor", second)
    finally:
        first.kill()
        second.stop()
    assert remaining_at_kill > 0, "the backlog was drained before the kill: make it longer"
    # each event published once in the database's books (its offset recorded once) …
    rows = OutboxEvent.objects.filter(status=EventStatus.PUBLISHED)
    assert rows.count() == total
    offsets = rows.values("topic", "kafka_partition", "kafka_offset").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in offsets)
    # … and on the broker every event at least once (the killed copy may have produced a
    # batch it did not record: at least once, consumers deduplicate by event id)
    received, _ = envelopes(broker, TRANSACTION_TOPICS, expected=total, timeout=10)
    seen = Counter(r["event_id"] for r in received)
    assert set(seen) == {str(pk) for pk in rows.values_list("pk", flat=True)}
    duplicated = sum(n - 1 for n in seen.values())
    assert duplicated <= 3 * 2  # at most the batch the killed copy had in flight, per side
