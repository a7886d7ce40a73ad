"""The relay under failure: broker down, a poisoned event, competing relays."""

import threading
from collections import Counter

import pytest
from django.db import connections

from outbox import relay
from outbox.events import relay_partition
from outbox.models import OutboxEvent
from outbox.tasks import relay_sweep
from payflow.platform import kafka
from tests.infra.kafka import KafkaBroker
from tests.ledger.conftest import pay
from tests.outbox.conftest import TRANSACTION_TOPICS, envelopes
from tests.waiting import drain_outbox, join_all

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def test_payments_continue_while_the_broker_is_down_and_every_event_arrives_after(
    merchant, broker, settings, infra_dir
):
    # given no broker at all at the configured address
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.01
    settings.OUTBOX_DELIVERY_TIMEOUT_MS = 1500
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9"
    relay.reset_producer()
    # when payments go on and the relay tries
    payments = [pay(merchant, amount=100 + i) for i in range(5)]
    reports = relay.relay_all(time_budget=30)
    # then nothing is lost or expired: every event is still pending, with its error noted
    business = OutboxEvent.objects.exclude(aggregate_type__startswith="audit")
    assert sum(r.published for r in reports) == 0
    assert business.filter(status="pending").count() == 15
    assert not OutboxEvent.objects.filter(status="dead").exists()
    assert business.filter(attempts__gte=1).exclude(last_error="").count() == 15

    # when a broker comes back, at a new address
    new_broker = KafkaBroker(infra_dir / "kafka-new").start()
    try:
        settings.KAFKA_BOOTSTRAP_SERVERS = new_broker.bootstrap
        import time

        time.sleep(0.1)  # past the tiny backoff
        published = sum(r.published for r in relay.relay_all(time_budget=30))
        # then every event arrives, once, in order per aggregate and topic
        received, _messages = envelopes(new_broker, TRANSACTION_TOPICS, expected=15)
    finally:
        new_broker.stop()
    assert published == OutboxEvent.objects.count()  # business and audit events alike
    assert len(received) == 15
    assert len({e["event_id"] for e in received}) == 15
    assert {e["aggregate"]["id"] for e in received} == {str(p.pk) for p in payments}
    assert OutboxEvent.objects.exclude(status="published").count() == 0


def poisoned_event(aggregate_id: str) -> OutboxEvent:
    """An event whose payload is larger than a Kafka message may be (1 MB by default)."""
    return OutboxEvent.objects.create(
        aggregate_type="payment",
        aggregate_id=aggregate_id,
        sequence=1,
        event_type="payment.created",
        topic=kafka.topic("transactions.initiated"),
        key=aggregate_id,
        payload={"blob": "x" * 1_500_000},
        relay_partition=relay_partition(aggregate_id),
    )


def test_a_poisoned_event_goes_dead_after_its_attempts_while_others_keep_flowing(
    merchant, broker, settings
):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.001
    poison = poisoned_event("poisoned-aggregate")
    # a later event of the same aggregate must wait behind it
    follower = OutboxEvent.objects.create(
        aggregate_type="payment",
        aggregate_id="poisoned-aggregate",
        sequence=2,
        event_type="payment.authorized",
        topic=kafka.topic("transactions.completed"),
        key="poisoned-aggregate",
        payload={},
        relay_partition=poison.relay_partition,
    )
    healthy = pay(merchant)
    import time

    for _ in range(4):
        relay.relay_all(time_budget=30)
        time.sleep(0.05)
    poison.refresh_from_db()
    follower.refresh_from_db()
    assert (poison.status, poison.attempts) == ("dead", 3)
    assert "MSG_SIZE_TOO_LARGE" in poison.last_error
    assert follower.status == "pending"  # held back: never overtakes its aggregate
    assert (follower.attempts, follower.last_error) == (0, "")
    received, _ = envelopes(broker, TRANSACTION_TOPICS, expected=3)
    assert {e["aggregate"]["id"] for e in received} == {str(healthy.pk)}


AGGREGATES = 200
EVENTS_PER_AGGREGATE = 50


def _bulk_events(settings):
    rows = []
    for a in range(AGGREGATES):
        aggregate_id = f"agg-{a:04d}"
        for sequence in range(1, EVENTS_PER_AGGREGATE + 1):
            rows.append(
                OutboxEvent(
                    aggregate_type="payment",
                    aggregate_id=aggregate_id,
                    sequence=sequence,
                    event_type=f"test.step{sequence}",
                    topic=kafka.topic("transactions.completed"),
                    key=aggregate_id,
                    payload={"n": sequence},
                    relay_partition=relay_partition(aggregate_id),
                )
            )
    OutboxEvent.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


@pytest.mark.celery_worker
def test_two_relays_and_duplicated_deliveries_publish_10000_events_once_and_in_order(
    broker, settings, celery_worker_process
):
    # given 10,000 pending events across 200 aggregates, interleaved by id
    total = _bulk_events(settings)
    assert total == 10_000
    errors = []

    def relay_in_thread(rounds):
        try:
            for _ in range(rounds):
                for partition in range(settings.OUTBOX_RELAY_PARTITIONS):
                    # the same partition asked twice: a duplicated task delivery
                    relay.relay_partition(partition, time_budget=5)
                    relay.relay_partition(partition, time_budget=5)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    # when two relays in this process and the real Celery worker all publish at once
    threads = [threading.Thread(target=relay_in_thread, args=(3,)) for _ in range(2)]
    sweeps = [relay_sweep.delay() for _ in range(4)]
    for thread in threads:
        thread.start()
    join_all(threads, 300, "relay threads")
    for sweep in sweeps:
        sweep.get(timeout=120)
    drain_outbox(120)

    # then every event is on Kafka exactly once, in order per aggregate
    assert errors == []
    received, _messages = envelopes(broker, ["transactions.completed"], expected=total, timeout=60)
    assert len(received) == total
    counts = Counter(e["event_id"] for e in received)
    assert max(counts.values()) == 1  # no crash happened, so not even a tolerated duplicate
    last: dict = {}
    for envelope in received:
        aggregate = envelope["aggregate"]["id"]
        assert envelope["sequence"] == last.get(aggregate, 0) + 1
        last[aggregate] = envelope["sequence"]
    assert set(last.values()) == {EVENTS_PER_AGGREGATE}
