"""Incremental verification; every ledger operation writes exactly its audit rows."""

import datetime

import pytest
from django.utils import timezone

from audit.checkpoints import audit_checkpoint_create
from audit.models import AuditEntry, VerificationRun
from audit.runs import verification_execute
from audit.verify import incremental_starts
from ledger.services.api_keys import api_key_create, api_key_revoke
from ledger.services.merchants import merchant_reactivate, merchant_suspend
from ledger.services.payments import payment_cancel
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from tests.ledger.conftest import pay


def new_events(operation):
    before = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    operation()
    return list(
        AuditEntry.objects.filter(id__gt=before).order_by("id").values_list("event_type", flat=True)
    )


def test_every_ledger_operation_writes_exactly_its_audit_rows(merchant):
    later = timezone.now() + datetime.timedelta(days=5)
    assert new_events(lambda: pay(merchant, capture=False)) == [
        "card_token.created",
        "payment.created",
        "payment.authorized",
    ]
    authorized = pay(merchant, capture=False)
    assert new_events(lambda: payment_cancel(payment=authorized)) == [
        "payment.cancelled",
        "acquirer_command.created",
        "acquirer_command.succeeded",
    ]
    assert new_events(lambda: pay(merchant, number="4000000000000002")) == [
        "card_token.created",
        "payment.created",
        "payment.failed",
    ]
    captured = pay(merchant, amount=10_000)
    assert new_events(lambda: refund_create(payment=captured, amount=500)) == [
        "payment.partially_refunded",
        "refund.created",
        "journal_entry.posted",
        "acquirer_command.created",
        "acquirer_command.succeeded",
        "refund.succeeded",
    ]
    assert new_events(lambda: chargeback_create(payment=captured, amount=300, reason="fraud")) == [
        "payment.charged_back",
        "chargeback.created",
        "journal_entry.posted",
        "chargeback.settled",
    ]
    assert new_events(lambda: settlement_run(now=later)) == [
        "payment.settled",
        "journal_entry.posted",
    ]
    assert new_events(lambda: payout_create(merchant=merchant, amount=1000, currency="EUR")) == [
        "payout.created",
        "journal_entry.posted",
        "payout.pending",
    ]
    issued = api_key_create(merchant=merchant)
    assert new_events(lambda: api_key_revoke(api_key=issued.api_key)) == ["api_key.revoked"]
    assert new_events(lambda: merchant_suspend(merchant=merchant)) == ["merchant.suspended"]
    assert new_events(lambda: merchant_reactivate(merchant=merchant)) == ["merchant.reactivated"]


def test_an_incremental_run_starts_from_the_last_checkpoint_a_good_run_verified(merchant):
    payment = pay(merchant)
    audit_checkpoint_create()
    assert incremental_starts() == ({}, None)  # nothing verified yet: in full
    full = verification_execute(
        run_id=VerificationRun.objects.create(started_by="t", lanes_total=16).id
    )
    assert (full.ok, full.checkpoint_number) == (True, 1)
    refund_create(payment=payment, amount=100)  # new rows after the verified checkpoint
    _starts, since = incremental_starts()
    assert since == 1
    incremental = verification_execute(
        run_id=VerificationRun.objects.create(started_by="t", lanes_total=16, incremental=True).id
    )
    assert incremental.ok
    assert incremental.rows == AuditEntry.objects.count() - full.rows  # only the new rows


@pytest.mark.django_db(transaction=True)
def test_an_incremental_run_still_catches_a_tamper_after_the_verified_checkpoint(merchant):
    from tests.audit.conftest import raw, triggers_dropped

    payment = pay(merchant)
    audit_checkpoint_create()
    verification_execute(run_id=VerificationRun.objects.create(started_by="t", lanes_total=16).id)
    refund = refund_create(payment=payment, amount=100)
    target = AuditEntry.objects.filter(object_id=str(refund.pk)).first()
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET reason = 'x' WHERE id = %s", [target.id])
    run = verification_execute(
        run_id=VerificationRun.objects.create(started_by="t", lanes_total=16, incremental=True).id
    )
    assert run.ok is False
    assert run.breaks[0]["seq"] == target.seq
    assert run.breaks[0]["kind"] == "row_altered"
