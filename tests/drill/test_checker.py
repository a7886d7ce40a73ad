"""The drill's history checker can fail: each kind of inconsistency it claims to catch,
made on purpose in the ledger, is reported (so a passing drill means something)."""

from __future__ import annotations

import pytest
from django.db import connection

from ledger import ids
from ledger.models import JournalEntry
from ledger.services.merchants import merchant_create
from tests.drill.check import check_operation
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db


def op(number, kind="payment", outcome="ok", amount=None, object_id="", **extra):
    return {
        "op": number,
        "kind": kind,
        "merchant": 0,
        "amount": amount or 10_000 + number,
        "outcome": outcome,
        "status": 201 if outcome == "ok" else 402,
        "object_id": object_id,
        "payment_id": "",
        "attempts": [{"at": 0, "status": 201, "error": ""}],
        **extra,
    }


def test_each_inconsistency_is_named():
    merchants = [merchant_create(name="drill-0")]
    good = pay(merchants[0], amount=10_001)
    twice = [pay(merchants[0], amount=10_002), pay(merchants[0], amount=10_002)]
    refused_but_captured = pay(merchants[0], amount=10_004)

    def verdict(operation):
        found = check_operation(operation, merchants)
        return {k: v for k, v in found.items() if v} or {"ok": 1}

    assert verdict(op(1, object_id=ids.encode("payment", good.pk))) == {"ok": 1}
    assert verdict(op(2, object_id=ids.encode("payment", twice[0].pk)))["duplicated"] == 1
    assert verdict(op(3, object_id="pay_x"))["lost"] == 1  # acknowledged, no row
    assert verdict(op(1, object_id="pay_someone_else"))["wrong"] == 1
    assert verdict(op(4, outcome="refused", object_id=""))["wrong"] == 1
    assert refused_but_captured.status == "captured"
    with connection.cursor() as cursor:  # behind the services' back, as a fault could
        entries = [
            str(e)
            for e in JournalEntry.objects.filter(transaction=good).values_list("pk", flat=True)
        ]
        marks = ", ".join(["%s"] * len(entries))
        cursor.execute(f"DELETE FROM ledger_journalline WHERE entry_id IN ({marks})", entries)  # noqa: S608 - placeholders only
        cursor.execute(f"DELETE FROM ledger_journalentry WHERE id IN ({marks})", entries)  # noqa: S608
    assert verdict(op(1, object_id=ids.encode("payment", good.pk)))["lost"] == 1
    # An error first, a consistent end: recovered.
    troubled = op(5, outcome="unanswered")
    troubled["attempts"] = [{"at": 0, "status": None, "error": "TimeoutError"}]
    assert verdict(troubled) == {"recovered": 1}
