"""Every event the ledger emits validates against the published JSON schemas: the outbox's
envelopes, and the audit sequencer's ``audit.events`` messages."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from jsonschema import Draft202012Validator

from audit import tlog
from audit.models import AuditEntry, Checkpoint
from audit.sequencer import log_size, published_messages
from ledger.events import EventType
from ledger.services.payments import payment_cancel, payment_update
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from outbox import events
from outbox.models import OutboxEvent
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay

SCHEMAS = Path(events.__file__).parent / "schemas"
DOCUMENTED = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def envelope_errors(envelope: dict) -> list[str]:
    """Envelope against envelope.json, payload against the schema its event type names."""
    payload_schema = EventType(envelope["type"]).schema
    errors = [
        *_validator("envelope.json").iter_errors(envelope),
        *_validator(payload_schema).iter_errors(envelope["payload"]),
    ]
    return sorted(error.message for error in errors)


def emit_every_kind_of_event(merchant):
    import datetime

    from django.utils import timezone

    declined = pay(merchant, number="4000000000000002")
    # an update of a failed payment is not a failure: transactions.completed
    payment_update(payment=declined, metadata={"note": "customer called"})
    payment_cancel(payment=pay(merchant, capture=False))
    captured = pay(merchant, amount=10_000)
    payment_update(payment=captured, metadata={"order": "A-9"})
    refund_create(payment=captured, amount=1_000, reason="requested_by_customer")
    chargeback_create(payment=captured, amount=500, reason="fraud")
    settlement_run(now=timezone.now() + datetime.timedelta(days=5))
    payout = payout_create(merchant=merchant, amount=1_000, currency="EUR")
    settlement_run(now=timezone.now() + datetime.timedelta(days=10))
    refund_create(payment=pay(merchant, amount=2_000))  # in full: payment.refunded
    return payout


def test_every_emitted_event_validates_against_its_schema(merchant):
    emit_every_kind_of_event(merchant)
    sequence()
    emitted = list(OutboxEvent.objects.order_by("id"))
    kinds = {event.aggregate_type for event in emitted}
    # the outbox carries the transactions only: the audit log is the sequencer's to publish
    assert kinds == {"payment", "refund", "chargeback", "payout"}
    for event in emitted:
        envelope = json.loads(json.dumps(events.envelope(event)))
        assert envelope_errors(envelope) == [], event.event_type
    # audit.events: one message per leaf, each valid against audit_entry.json
    messages = [json.loads(value) for _, value in published_messages(0, log_size())]
    assert [message["index"] for message in messages] == list(range(AuditEntry.objects.count()))
    validator = _validator(EventType.AUDIT_ENTRY_RECORDED.schema)
    for message in messages:
        errors = sorted(error.message for error in validator.iter_errors(message))
        assert errors == [], message["entry"]["event_type"]
    # audit.checkpoints: the signed note of the whole log, verifying with the public key
    note = Checkpoint.objects.get(size=len(messages)).note
    assert tlog.verify_note(note, tlog.Verifier(settings.AUDIT_PUBLIC_KEY)).size == len(messages)


def test_every_emitted_event_type_is_documented(merchant):
    emit_every_kind_of_event(merchant)
    documented = DOCUMENTED.read_text()
    published = set(OutboxEvent.objects.values_list("event_type", flat=True))
    recorded = set(AuditEntry.objects.values_list("event_type", flat=True))
    for event_type in published | recorded | {str(topic) for topic in events.ALL_TOPICS}:
        assert f"`{event_type}`" in documented, event_type


@pytest.mark.parametrize(
    ("broken", "where", "rule"),
    [
        ({"amount": 10.5}, ("amount",), "type"),
        ({"amount": "1000"}, ("amount",), "type"),
        ({"currency": "eur"}, ("currency",), "pattern"),
        ({"livemode": "yes"}, ("livemode",), "type"),
        ({"pan": "4242424242424242"}, (), "additionalProperties"),
    ],
)
def test_the_schema_rejects_what_a_consumer_must_never_see(merchant, broken, where, rule):
    pay(merchant)
    payment_event = OutboxEvent.objects.filter(aggregate_type="payment").first()
    envelope = json.loads(json.dumps(events.envelope(payment_event)))
    envelope["payload"].update(broken)
    # exactly one error, and it is the broken field's, for the right reason
    assert list(_validator("envelope.json").iter_errors(envelope)) == []
    errors = list(_validator("transaction.json").iter_errors(envelope["payload"]))
    assert [(tuple(error.absolute_path), error.validator) for error in errors] == [(where, rule)]


def test_the_relays_bytes_are_the_envelope_of_the_stored_row(merchant):
    """The relay splices the stored payload text into the envelope (no decode, no
    re-encode): what it publishes parses to exactly ``envelope()`` of the same row,
    non-ASCII text included."""
    from outbox import relay

    pay(merchant, external_reference="Crème brûlée — 東京")
    batch = [
        event
        for partition in range(settings.OUTBOX_RELAY_PARTITIONS)
        for event in relay.next_batch(partition, 100)
    ]
    assert batch
    rows = {event.pk: event for event in OutboxEvent.objects.all()}
    for pending in batch:
        published = json.loads(events.envelope_bytes(pending))
        assert published == json.loads(json.dumps(events.envelope(rows[pending.id])))
    assert any(b"\\u6771\\u4eac" in events.envelope_bytes(p) for p in batch)  # as stored
