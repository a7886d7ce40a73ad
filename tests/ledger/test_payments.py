"""Payments through the services: create, decline, capture, cancel; against MariaDB."""

import pytest

from ledger.exceptions import (
    AmountExceedsRemaining,
    ConcurrentUpdate,
    InvalidAmount,
    InvalidStateTransition,
    MerchantInactive,
    NotFound,
    UnsupportedCurrency,
)
from ledger.models import JournalEntry, JournalLine, Transaction, TransactionStatus
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.merchants import merchant_suspend
from ledger.services.payments import payment_cancel, payment_capture, payment_create
from tests.ledger.conftest import pay


def test_an_automatic_capture_payment_is_captured_with_one_balanced_entry(merchant):
    payment = pay(merchant, amount=12_345)
    assert payment.status == TransactionStatus.CAPTURED
    assert (payment.captured_amount, payment.version) == (12_345, 3)
    entry = JournalEntry.objects.get(transaction=payment)
    assert entry.kind == "capture"
    assert sorted(JournalLine.objects.filter(entry=entry).values_list("amount", flat=True)) == [
        -12_345,
        12_345,
    ]
    assert merchant_balances(merchant) == {
        "EUR": {"pending": 12_345, "available": 0, "receivable": 0}
    }
    assert ledger_check_invariants().ok


def test_a_manual_capture_payment_stops_at_authorized_without_moving_money(merchant):
    payment = pay(merchant, capture=False)
    assert payment.status == TransactionStatus.AUTHORIZED
    assert not JournalEntry.objects.filter(transaction=payment).exists()


def test_a_partial_capture_captures_less_and_releases_the_rest(merchant):
    payment = pay(merchant, amount=10_000, capture=False)
    captured = payment_capture(payment=payment, amount=7_500)
    assert (captured.status, captured.captured_amount, captured.amount) == (
        "captured",
        7_500,
        10_000,
    )
    assert merchant_balances(merchant)["EUR"]["pending"] == 7_500


def test_capturing_more_than_authorized_is_refused(merchant):
    payment = pay(merchant, amount=10_000, capture=False)
    with pytest.raises(AmountExceedsRemaining):
        payment_capture(payment=payment, amount=10_001)
    assert Transaction.objects.get(pk=payment.pk).status == "authorized"


def test_a_captured_payment_cannot_be_captured_again_or_cancelled(merchant):
    payment = pay(merchant)
    with pytest.raises(InvalidStateTransition):
        payment_capture(payment=payment)
    with pytest.raises(InvalidStateTransition):
        payment_cancel(payment=payment)
    assert JournalEntry.objects.filter(transaction=payment).count() == 1


def test_cancel_voids_an_authorization(merchant):
    payment = pay(merchant, capture=False)
    cancelled = payment_cancel(payment=payment)
    assert cancelled.status == TransactionStatus.CANCELLED
    assert cancelled.completed_at is not None
    with pytest.raises(InvalidStateTransition):
        payment_capture(payment=payment)


@pytest.mark.parametrize(
    ("number", "decline_code"),
    [
        ("4000000000000002", "generic_decline"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
        ("4000000000000119", "processing_error"),
    ],
)
def test_a_declined_card_leaves_a_failed_payment_with_its_code_and_no_journal(
    merchant, number, decline_code
):
    payment = pay(merchant, number=number)
    assert payment.status == TransactionStatus.FAILED
    assert payment.decline_code == decline_code
    assert Transaction.objects.get(pk=payment.pk).decline_code == decline_code
    assert not JournalLine.objects.exists()
    assert merchant_balances(merchant) == {}


def test_a_stale_if_match_version_gives_concurrent_update(merchant):
    payment = pay(merchant, capture=False)
    with pytest.raises(ConcurrentUpdate) as info:
        payment_capture(payment=payment, expected_version=1)
    assert info.value.current_version == payment.version
    assert Transaction.objects.get(pk=payment.pk).status == "authorized"


def test_a_suspended_merchant_cannot_create_payments(merchant):
    merchant_suspend(merchant=merchant)
    merchant.refresh_from_db()
    with pytest.raises(MerchantInactive):
        pay(merchant)
    assert not Transaction.objects.exists()


@pytest.mark.parametrize("amount", [0, -5, 10.5, "1000", True, None, 10**16])
def test_amounts_must_be_positive_integers_of_minor_units(merchant, amount):
    with pytest.raises(InvalidAmount):
        pay(merchant, amount=amount)
    assert not Transaction.objects.exists()


@pytest.mark.parametrize("currency", ["XXX", "eur1", "", None, 978])
def test_unknown_currencies_are_refused(merchant, currency):
    with pytest.raises(UnsupportedCurrency):
        pay(merchant, currency=currency)


def test_currencies_are_normalized_and_exponents_do_not_change_minor_units(merchant):
    assert pay(merchant, amount=500, currency="jpy").currency == "JPY"
    assert pay(merchant, amount=1_234, currency="KWD").captured_amount == 1_234


def test_a_token_of_another_merchant_cannot_be_charged(merchant, other_merchant):
    theirs = pay(other_merchant).card_token
    with pytest.raises(NotFound):
        payment_create(merchant=merchant, amount=100, currency="EUR", token=theirs)


def test_a_saved_token_can_be_charged_again(merchant):
    first = pay(merchant)
    second = payment_create(merchant=merchant, amount=700, currency="EUR", token=first.card_token)
    assert second.status == "captured"
    assert second.card_token_id == first.card_token_id


def test_an_undecryptable_card_fails_the_payment_with_its_own_code_not_as_a_decline(
    merchant, settings, caplog
):
    # given a token whose key version has left the keyring
    token = pay(merchant).card_token
    settings.VAULT_KEYS = {99: b"k" * 16 + b"e" * 16}
    # when it is charged
    payment = payment_create(merchant=merchant, amount=100, currency="EUR", token=token)
    # then the payment fails as a platform fault, loudly, and no money moved
    assert (payment.status, payment.decline_code) == ("failed", "vault_error")
    assert f"card token {token.pk}" in caplog.text
    assert JournalEntry.objects.filter(transaction=payment).count() == 0
