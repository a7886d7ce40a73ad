"""A payment's lifecycle reaches Kafka: right events, right topics, in order, once."""

import pytest

from audit.models import AuditEntry
from ledger.services.payments import payment_capture
from ledger.services.refunds import refund_create
from outbox import relay
from outbox.models import OutboxEvent
from payflow.platform import db
from tests.ledger.conftest import pay
from tests.outbox.conftest import TRANSACTION_TOPICS, envelopes

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def assert_in_order_within_each_topic(received, messages):
    """Kafka orders one key within one topic: as consumed, sequences only go up there."""
    last: dict = {}
    for envelope, message in zip(received, messages, strict=True):
        key = (message.topic(), envelope["aggregate"]["id"])
        assert envelope["sequence"] > last.get(key, 0), (key, envelope["sequence"])
        last[key] = envelope["sequence"]


def relay_everything(timeout=20):
    """Relay until nothing is pending. A real worker may be relaying the on-commit nudges
    at the same time (the session's Celery worker): who publishes does not matter."""
    import time

    deadline = time.monotonic() + timeout
    while OutboxEvent.objects.filter(status="pending").exists():
        assert time.monotonic() < deadline, "events still pending"
        reports = relay.relay_all(time_budget=10)
        assert not any(r.errors for r in reports)
    return (
        OutboxEvent.objects.filter(status="published")
        .exclude(aggregate_type__startswith="audit")
        .count()
    )


def test_a_payment_lifecycle_produces_its_events_in_order_once_each(merchant, broker):
    payment = pay(merchant, amount=5000, capture=False)
    payment = payment_capture(payment=payment, amount=4000)
    refund = refund_create(payment=payment, amount=1000)
    assert relay_everything() == 6

    received, messages = envelopes(broker, TRANSACTION_TOPICS, expected=6)
    of_payment = sorted(
        (e for e in received if e["aggregate"]["id"] == str(payment.pk)),
        key=lambda e: e["sequence"],
    )
    assert [(e["type"], e["sequence"]) for e in of_payment] == [
        ("payment.created", 1),
        ("payment.authorized", 2),
        ("payment.captured", 3),
        ("payment.partially_refunded", 4),
    ]
    of_refund = sorted(
        (e for e in received if e["aggregate"]["id"] == str(refund.pk)), key=lambda e: e["sequence"]
    )
    assert [e["type"] for e in of_refund] == ["refund.created", "refund.succeeded"]
    assert_in_order_within_each_topic(received, messages)
    topics = {m.value(): m.topic() for m in messages}
    by_type = {e["type"]: topics[m.value()] for e, m in zip(received, messages, strict=True)}
    assert by_type["payment.created"].endswith("transactions.initiated")
    assert by_type["payment.captured"].endswith("transactions.completed")
    # once each, keyed by aggregate, with id and type in the headers
    assert len({e["event_id"] for e in received}) == 6
    for message, envelope in zip(messages, received, strict=True):
        headers = dict(message.headers())
        assert headers["event_id"].decode() == envelope["event_id"]
        assert headers["event_type"].decode() == envelope["type"]
        assert message.key().decode() == envelope["aggregate"]["id"]
    # and every row is marked published with its Kafka coordinates
    assert OutboxEvent.objects.exclude(status="published").count() == 0
    assert OutboxEvent.objects.filter(kafka_offset__isnull=True).count() == 0
    # a second relay run publishes nothing again
    assert sum(r.published for r in relay.relay_all(time_budget=10)) == 0
    assert len(envelopes(broker, TRANSACTION_TOPICS, expected=7, timeout=10)[0]) == 6


def test_a_declined_payment_goes_to_the_failed_topic(merchant, broker):
    pay(merchant, number="4000000000000002")
    relay_everything()
    received, _ = envelopes(broker, ["transactions.failed"], expected=1)
    assert [e["type"] for e in received] == ["payment.failed"]
    assert received[0]["payload"]["decline_code"] == "generic_decline"


def test_a_rolled_back_change_writes_no_event(merchant, broker):
    # given an authorized payment and its committed events
    payment = pay(merchant, capture=False)
    events_of_payment = OutboxEvent.objects.filter(aggregate_id=str(payment.pk))
    before = set(events_of_payment.values_list("event_type", flat=True))
    recorded = list(AuditEntry.objects.order_by("id").values_list("hash", flat=True))

    # when its capture is rolled back by a later failure in the same transaction
    @db.atomic
    def capture_then_fail():
        payment_capture(payment=payment)
        raise RuntimeError("something after the capture failed")

    with pytest.raises(RuntimeError, match="after the capture"):
        capture_then_fail()

    # then no capture event exists, no audit entry of it either, nothing of it reaches Kafka
    assert before == {"payment.created", "payment.authorized"}
    assert set(events_of_payment.values_list("event_type", flat=True)) == before
    assert list(AuditEntry.objects.order_by("id").values_list("hash", flat=True)) == recorded
    relay_everything()
    received, _ = envelopes(broker, TRANSACTION_TOPICS, expected=3, timeout=5)
    assert sorted(e["type"] for e in received) == ["payment.authorized", "payment.created"]
