"""Every event the ledger emits validates against the published JSON schemas."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ledger.services.payments import payment_cancel
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from outbox import events
from outbox.models import OutboxEvent
from tests.ledger.conftest import pay

SCHEMAS = Path(events.__file__).parent / "schemas"
DOCUMENTED = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def validator() -> Draft202012Validator:
    load = lambda name: json.loads((SCHEMAS / name).read_text())  # noqa: E731
    registry = Registry().with_resource(
        "transaction.json", Resource.from_contents(load("transaction.json"))
    )
    return Draft202012Validator(
        load("envelope.json"), registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def emit_every_kind_of_event(merchant):
    import datetime

    from django.utils import timezone

    pay(merchant, number="4000000000000002")
    payment_cancel(payment=pay(merchant, capture=False))
    captured = pay(merchant, amount=10_000)
    refund_create(payment=captured, amount=1_000)
    chargeback_create(payment=captured, amount=500, reason="fraud")
    settlement_run(now=timezone.now() + datetime.timedelta(days=5))
    payout = payout_create(merchant=merchant, amount=1_000, currency="EUR")
    settlement_run(now=timezone.now() + datetime.timedelta(days=10))
    refund_create(payment=pay(merchant, amount=2_000))  # in full: payment.refunded
    return payout


def test_every_emitted_event_validates_against_its_schema(merchant):
    emit_every_kind_of_event(merchant)
    check = validator()
    emitted = list(OutboxEvent.objects.order_by("id"))
    assert len(emitted) > 15
    for event in emitted:
        envelope = json.loads(json.dumps(events.envelope(event)))
        errors = sorted(check.iter_errors(envelope), key=str)
        assert errors == [], (event.event_type, [e.message for e in errors])


def test_every_emitted_event_type_is_documented(merchant):
    emit_every_kind_of_event(merchant)
    documented = DOCUMENTED.read_text()
    for event_type in set(OutboxEvent.objects.values_list("event_type", flat=True)):
        assert f"`{event_type}`" in documented, event_type


@pytest.mark.parametrize(
    "broken",
    [
        {"amount": 10.5},
        {"amount": "1000"},
        {"currency": "eur"},
        {"pan": "4242424242424242"},
    ],
)
def test_the_schema_rejects_what_a_consumer_must_never_see(merchant, broken):
    pay(merchant)
    envelope = json.loads(json.dumps(events.envelope(OutboxEvent.objects.first())))
    envelope["payload"].update(broken)
    assert list(validator().iter_errors(envelope))
