"""The sequencer publishes the log to Kafka in log order; a consumer re-verifies it there
with the public key alone (issue 15: ``audit.events`` from the log, not the outbox)."""

import base64
import json

import pytest
from django.conf import settings

from audit import merkle, tlog
from audit.models import AuditEntry, LogPublication
from ledger.services.refunds import refund_create
from payflow.platform import kafka, trail
from tests.audit.conftest import sequence, test_sequencer
from tests.ledger.conftest import pay

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def consumed(broker, topic, expected):
    return broker.consume([kafka.topic(topic)], expected=expected, timeout=20)


def test_the_log_reaches_kafka_in_order_and_reverifies_there(broker, merchant):
    # (broker first: it sets the per-test topic prefix)
    payment = pay(merchant, amount=1234)
    refund_create(payment=payment, amount=34)
    sequence(publish=True)
    total = AuditEntry.objects.count()
    messages = consumed(broker, "audit.events", total)
    values = [json.loads(message.value()) for message in messages]
    assert [value["index"] for value in values] == list(range(total))
    assert {message.key() for message in messages} == {b"payflow.test/audit"}
    # a consumer re-checks every entry, every object's chain and the signed root
    tips = {}
    for value in values:
        body = base64.b64decode(value["body"])
        assert json.loads(body) == value["entry"]
        assert trail.entry_hash(value["prev_hash"], body) == value["hash"]
        key = (value["entry"]["object_type"], value["entry"]["object_id"])
        assert value["prev_hash"] == tips.get(key, trail.GENESIS_HASH)
        tips[key] = value["hash"]
    [note] = consumed(broker, "audit.checkpoints", 1)
    signed = tlog.verify_note(note.value().decode(), tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    assert signed.size == total
    assert signed.root == merkle.merkle_root(bytes.fromhex(v["hash"]) for v in values)


def test_publishing_resumes_from_the_last_published_index(broker, merchant):
    pay(merchant)
    sequence(publish=True)
    first = AuditEntry.objects.count()
    assert LogPublication.objects.get().entries == first
    pay(merchant, amount=999)
    sequence(publish=True)
    total = AuditEntry.objects.count()
    values = [json.loads(m.value()) for m in consumed(broker, "audit.events", total)]
    assert [value["index"] for value in values] == list(range(total))  # no repeat, no gap
    assert LogPublication.objects.get().entries == total
    assert test_sequencer  # (the fixture module's helper, for readers)
