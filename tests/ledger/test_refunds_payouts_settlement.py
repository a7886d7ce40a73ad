"""Refunds, chargebacks, payouts and settlement, and the balances they leave."""

import datetime

import pytest
from django.utils import timezone

from ledger.exceptions import (
    AmountExceedsRemaining,
    InsufficientBalance,
    InvalidRequest,
    InvalidStateTransition,
)
from ledger.models import JournalEntry, Transaction, TransactionStatus
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from tests.ledger.conftest import pay


def later(days):
    return timezone.now() + datetime.timedelta(days=days)


def settled_payment(merchant, amount=10_000):
    payment = pay(merchant, amount=amount)
    settlement_run(now=later(merchant.settlement_delay_days))
    payment.refresh_from_db()
    assert payment.status == "settled"
    return payment


def test_partial_refunds_add_up_and_the_last_one_marks_the_payment_refunded(merchant):
    payment = pay(merchant, amount=10_000)
    first = refund_create(payment=payment, amount=3_000)
    second = refund_create(payment=payment, amount=2_000)
    payment.refresh_from_db()
    assert (first.status, first.parent_id, second.amount) == ("refunded", payment.pk, 2_000)
    assert (payment.status, payment.refunded_amount) == ("captured", 5_000)
    rest = refund_create(payment=payment)
    payment.refresh_from_db()
    assert (rest.amount, payment.status, payment.refunded_amount) == (5_000, "refunded", 10_000)
    assert merchant_balances(merchant)["EUR"]["pending"] == 0
    assert ledger_check_invariants().ok


def test_a_refund_cannot_exceed_captured_minus_already_refunded(merchant):
    payment = pay(merchant, amount=10_000)
    refund_create(payment=payment, amount=6_000)
    with pytest.raises(AmountExceedsRemaining, match="4000 of 10000"):
        refund_create(payment=payment, amount=6_000)
    payment.refresh_from_db()
    assert payment.refunded_amount == 6_000
    assert Transaction.objects.filter(type="refund").count() == 1


def test_an_authorized_or_failed_payment_cannot_be_refunded(merchant):
    authorized = pay(merchant, capture=False)
    failed = pay(merchant, number="4000000000000002")
    for payment in (authorized, failed):
        with pytest.raises(InvalidStateTransition):
            refund_create(payment=payment)
    assert not Transaction.objects.filter(type="refund").exists()


def test_settlement_moves_captured_money_to_available_after_the_delay(merchant):
    payment = pay(merchant, amount=10_000)
    refund_create(payment=payment, amount=1_000)
    assert settlement_run(now=later(1)).payments_settled == 0
    report = settlement_run(now=later(2))
    assert report.payments_settled == 1
    assert merchant_balances(merchant)["EUR"] == {"pending": 0, "available": 9_000, "receivable": 0}
    # a second run finds nothing left to do
    assert settlement_run(now=later(2)).payments_settled == 0
    assert JournalEntry.objects.filter(kind="settlement").count() == 1
    assert ledger_check_invariants().ok


def test_a_refund_of_a_settled_payment_comes_out_of_the_available_balance(merchant):
    payment = settled_payment(merchant)
    refund_create(payment=payment, amount=4_000)
    assert merchant_balances(merchant)["EUR"]["available"] == 6_000


def test_a_refund_of_a_settled_payment_is_refused_when_available_does_not_cover_it(merchant):
    payment = settled_payment(merchant, amount=10_000)
    payout_create(merchant=merchant, amount=8_000, currency="EUR")
    with pytest.raises(InsufficientBalance):
        refund_create(payment=payment, amount=3_000)
    payment.refresh_from_db()
    assert payment.refunded_amount == 0
    assert not Transaction.objects.filter(type="refund").exists()


def test_payouts_never_exceed_the_available_balance_and_a_refused_one_leaves_nothing(merchant):
    settled_payment(merchant, amount=10_000)
    payout = payout_create(merchant=merchant, amount=7_000, currency="EUR")
    assert payout.status == TransactionStatus.PENDING
    with pytest.raises(InsufficientBalance):
        payout_create(merchant=merchant, amount=3_001, currency="EUR")
    assert Transaction.objects.filter(type="payout").count() == 1
    assert merchant_balances(merchant)["EUR"]["available"] == 3_000
    report = settlement_run(now=later(5))
    payout.refresh_from_db()
    assert (report.payouts_settled, payout.status) == (1, "settled")
    assert ledger_check_invariants().ok


def test_a_chargeback_beyond_the_available_balance_becomes_a_receivable(merchant):
    payment = settled_payment(merchant, amount=10_000)
    payout_create(merchant=merchant, amount=9_000, currency="EUR")
    chargeback = chargeback_create(payment=payment, amount=2_500, reason="fraudulent")
    assert (chargeback.status, chargeback.type) == ("settled", "chargeback")
    assert merchant_balances(merchant)["EUR"] == {"pending": 0, "available": 0, "receivable": 1_500}
    payment.refresh_from_db()
    assert payment.charged_back_amount == 2_500
    assert ledger_check_invariants().ok


def test_a_chargeback_needs_a_reason(merchant):
    payment = pay(merchant)
    with pytest.raises(InvalidRequest):
        chargeback_create(payment=payment, amount=100, reason=" ")
    assert not Transaction.objects.filter(type="chargeback").exists()
