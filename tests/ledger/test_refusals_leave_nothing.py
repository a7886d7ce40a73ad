"""Every refusal of every ledger service leaves nothing behind: no row added, removed or
changed in any table a money operation touches.

Transactional tests (``django_db(transaction=True)``): ``payflow.platform.db.atomic`` is a real
transaction with its retry wrapper, so a refusal is a real ROLLBACK of everything the
service wrote before it raised (its compare-and-set, audit row, outbox event, journal
lines), and ``on_commit`` callbacks fire as in production. The tests inside one test
transaction (``test_refunds_payouts_settlement.py``) run ``atomic`` as a savepoint and
check only transactions and balances.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.utils import timezone

from ledger.exceptions import (
    AmountExceedsRemaining,
    ConcurrentUpdate,
    InsufficientBalance,
    InvalidAmount,
    InvalidCard,
    InvalidRequest,
    InvalidStateTransition,
    LiveModeUnavailable,
    MerchantInactive,
    UnsupportedCurrency,
)
from ledger.models import AccountKind
from ledger.services import settlement
from ledger.services.api_keys import api_key_create
from ledger.services.journal import UnbalancedEntry, journal_post, platform_account
from ledger.services.merchants import merchant_create, merchant_suspend
from ledger.services.payments import CardInput, payment_cancel, payment_capture, payment_create
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.vault import card_tokenize
from payflow.platform import db
from tests.ledger.conftest import pay
from tests.money_snapshot import changes, snapshot

pytestmark = pytest.mark.django_db(transaction=True)


def later(days: int) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(days=days)


def refused(error: type[Exception], operation: Callable[[], object]) -> None:
    """``operation`` raises ``error`` and every table is exactly as it was."""
    before = snapshot()
    with pytest.raises(error):
        operation()
    assert changes(before, snapshot()) == {}


@pytest.fixture
def shop():
    return merchant_create(name="refusals")


@pytest.fixture
def settled(shop):
    payment = pay(shop, amount=10_000)
    settlement.settlement_run(now=later(shop.settlement_delay_days))
    payment.refresh_from_db()
    assert payment.status == "settled"
    return payment


def test_refunds_refused_leave_nothing(shop, settled):
    payout_create(merchant=shop, amount=8_000, currency="EUR")
    refused(InsufficientBalance, lambda: refund_create(payment=settled, amount=3_000))
    refused(AmountExceedsRemaining, lambda: refund_create(payment=settled, amount=10_001))
    refused(InvalidAmount, lambda: refund_create(payment=settled, amount=0))
    refused(ConcurrentUpdate, lambda: refund_create(payment=settled, amount=1, expected_version=1))
    held = pay(shop, amount=500, capture=False)
    cancelled = payment_cancel(payment=held)
    refused(InvalidStateTransition, lambda: refund_create(payment=cancelled, amount=100))


def test_chargebacks_refused_leave_nothing(shop):
    payment = pay(shop, amount=2_000)
    refused(InvalidRequest, lambda: chargeback_create(payment=payment, amount=100, reason=" "))
    refused(
        AmountExceedsRemaining,
        lambda: chargeback_create(payment=payment, amount=2_001, reason="fraudulent"),
    )


def test_payouts_refused_leave_nothing(shop, settled):
    refused(
        InsufficientBalance, lambda: payout_create(merchant=shop, amount=10_001, currency="EUR")
    )
    refused(
        InsufficientBalance,
        lambda: payout_create(merchant=shop, livemode=True, amount=1, currency="EUR"),
    )
    refused(InvalidAmount, lambda: payout_create(merchant=shop, amount=-5, currency="EUR"))
    refused(UnsupportedCurrency, lambda: payout_create(merchant=shop, amount=5, currency="XXX"))
    refused(
        InvalidRequest,
        lambda: payout_create(
            merchant=shop, amount=5, currency="EUR", external_reference="r" * 101
        ),
    )
    merchant_suspend(merchant=shop)
    refused(MerchantInactive, lambda: payout_create(merchant=shop, amount=5, currency="EUR"))


def test_captures_and_cancels_refused_leave_nothing(shop):
    held = pay(shop, amount=3_000, capture=False)
    refused(AmountExceedsRemaining, lambda: payment_capture(payment=held, amount=3_001))
    refused(ConcurrentUpdate, lambda: payment_capture(payment=held, expected_version=1))
    captured = pay(shop, amount=1_000)
    refused(InvalidStateTransition, lambda: payment_capture(payment=captured))
    refused(InvalidStateTransition, lambda: payment_cancel(payment=captured))
    merchant_suspend(merchant=shop)
    refused(MerchantInactive, lambda: payment_capture(payment=held))


def test_payments_refused_leave_nothing(shop, settings):
    card = CardInput(number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")

    def create(**overrides):
        return lambda: payment_create(
            **{"merchant": shop, "amount": 1_000, "currency": "EUR", "card": card, **overrides}
        )

    refused(InvalidAmount, create(amount=10.5))
    refused(UnsupportedCurrency, create(currency="ABC"))
    refused(InvalidCard, create(card=CardInput(number="4242424242424241", exp_month=12,
                                               exp_year=2034)))  # fmt: skip
    refused(InvalidRequest, create(metadata={"k": "v" * 501}))
    settings.LIVE_ACQUIRER_CLASS = ""
    refused(LiveModeUnavailable, create(livemode=True))
    # suspended after the caller read the merchant (the object in hand still says active):
    # the status read inside the tokenization's own transaction refuses an inline card. A
    # stored token's payment is one INSERT and trusts the merchant in hand (the API's is at
    # most API_CACHE_SECONDS old: tests/payflow/api/test_process_caches.py)
    token = card_tokenize(merchant=shop, number="4242424242424242", exp_month=12, exp_year=2034)
    merchant_suspend(merchant=shop)
    assert shop.is_active
    refused(MerchantInactive, create())
    shop.refresh_from_db()
    refused(MerchantInactive, create())
    refused(MerchantInactive, create(card=None, token=token, cvc="123"))


def test_an_unbalanced_or_mixed_mode_journal_entry_is_refused_and_leaves_nothing():
    eur = platform_account(AccountKind.ACQUIRER_CLEARING, "EUR", livemode=False)
    bank = platform_account(AccountKind.SETTLEMENT_BANK, "EUR", livemode=False)
    live_bank = platform_account(AccountKind.SETTLEMENT_BANK, "EUR", livemode=True)

    @db.atomic
    def post(lines):
        journal_post(kind="adjustment", lines=lines)

    refused(UnbalancedEntry, lambda: post([(eur, 5), (bank, -4)]))
    refused(UnbalancedEntry, lambda: post([(eur, 5), (live_bank, -5)]))
    refused(UnbalancedEntry, lambda: post([(eur, 0), (bank, 0)]))
    refused(UnbalancedEntry, lambda: post([]))


def test_a_settlement_that_fails_half_way_rolls_its_payment_back(shop, monkeypatch):
    payment = pay(shop, amount=4_000)

    def fail(**kwargs):
        raise RuntimeError("the journal posting failed")

    # the compare-and-set to settled, its audit row and its event are written first
    monkeypatch.setattr(settlement, "journal_post", fail)
    refused(RuntimeError, lambda: settlement.settlement_run(now=later(5)))
    payment.refresh_from_db()
    assert payment.status == "captured"


def test_merchant_and_api_key_input_refusals_leave_nothing(shop):
    refused(InvalidRequest, lambda: merchant_create(name="  "))
    refused(InvalidRequest, lambda: api_key_create(merchant=shop, mode="prod"))
