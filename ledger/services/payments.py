"""Payments: create (authorize, optionally capture), capture, cancel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ledger import acquirer
from ledger.currencies import normalize_currency, validate_amount
from ledger.exceptions import (
    AmountExceedsRemaining,
    InvalidRequest,
    MerchantInactive,
    NotFound,
    VaultError,
)
from ledger.models import (
    AccountKind,
    CaptureMethod,
    CardToken,
    Merchant,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.services.journal import journal_post, merchant_account, platform_account
from ledger.services.transitions import (
    check_expected_version,
    transaction_compare_and_set,
    transaction_fresh,
    transaction_insert,
)
from payflow import db

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardInput:
    """A card sent inline with a payment. Tokenized first; the CVC is used once, never stored."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str | None = None
    holder_name: str = ""

    def __repr__(self) -> str:
        return (
            f"CardInput(number=****{str(self.number)[-4:]}, exp={self.exp_month}/{self.exp_year})"
        )


def _validate_metadata(metadata: Any) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > 50:
        raise InvalidRequest("metadata must be an object with at most 50 keys", param="metadata")
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > 40:
            raise InvalidRequest(
                "metadata keys must be strings of at most 40 characters", param="metadata"
            )
        if not isinstance(value, str) or len(value) > 500:
            raise InvalidRequest(
                "metadata values must be strings of at most 500 characters", param="metadata"
            )
    return metadata


def _token_for(merchant: Merchant, token: CardToken | None, card: CardInput | None) -> CardToken:
    from ledger.services.vault import card_tokenize

    if (token is None) == (card is None):
        raise InvalidRequest("send exactly one of card or token", param="card")
    if card is not None:
        return card_tokenize(
            merchant=merchant,
            number=card.number,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            holder_name=card.holder_name,
        )
    if token.merchant_id != merchant.pk:
        raise NotFound("no such token", param="token")
    return token


@db.atomic
def _payment_insert(
    *,
    merchant: Merchant,
    token: CardToken,
    amount: int,
    currency: str,
    capture: bool,
    external_reference: str | None,
    metadata: dict,
) -> Transaction:
    # Re-read the merchant inside the transaction: a suspension committed a moment ago wins.
    if not Merchant.objects.filter(pk=merchant.pk, status="active").exists():
        raise MerchantInactive("this merchant is suspended and cannot create payments")
    return transaction_insert(
        merchant=merchant,
        type=TransactionType.PAYMENT,
        status=TransactionStatus.INITIATED,
        amount=amount,
        currency=currency,
        card_token=token,
        capture_method=CaptureMethod.AUTOMATIC if capture else CaptureMethod.MANUAL,
        external_reference=external_reference,
        metadata=metadata,
    )


def _authorize_outside_transaction(
    payment: Transaction, token: CardToken, cvc: str | None
) -> acquirer.AuthorizationResult:
    from ledger.vault import reveal_card_for_acquirer

    try:
        card = reveal_card_for_acquirer(token)
    except VaultError as exc:
        # Our fault, not the cardholder's: a tampered ciphertext or a key missing from the
        # keyring. The payment fails with its own code and operators are told loudly.
        logger.error(
            "card token %s of payment %s cannot be decrypted: %s", token.pk, payment.pk, exc
        )
        return acquirer.AuthorizationResult(
            approved=False, decline_code="vault_error", message="The stored card cannot be used."
        )
    request = acquirer.AuthorizationRequest(
        pan=card.pan,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        cvc=cvc,
        amount=payment.amount,
        currency=payment.currency,
        reference=str(payment.pk),
    )
    try:
        return acquirer.authorize(request)
    except db.ExternalCallInTransaction:
        raise
    except Exception as exc:
        # The acquirer did not answer: we cannot know the outcome, so the payment fails
        # (an authorization the issuer may hold expires on its own).
        logger.warning("acquirer call failed for payment %s: %s", payment.pk, type(exc).__name__)
        return acquirer.AuthorizationResult(
            approved=False,
            decline_code="acquirer_unavailable",
            message="The acquirer could not be reached.",
        )


def _capture(payment: Transaction, amount: int) -> Transaction:
    now = timezone.now()
    payment = transaction_compare_and_set(
        payment,
        event_type="payment.captured",
        status=TransactionStatus.CAPTURED,
        captured_amount=amount,
        captured_at=now,
        completed_at=now,
    )
    journal_post(
        kind="capture",
        merchant=payment.merchant,
        transaction_obj=payment,
        lines=[
            (platform_account(AccountKind.ACQUIRER_CLEARING, payment.currency), amount),
            (
                merchant_account(payment.merchant, AccountKind.MERCHANT_PENDING, payment.currency),
                -amount,
            ),
        ],
    )
    return payment


@db.atomic
def _payment_record_authorization(
    payment_id: Any, result: acquirer.AuthorizationResult, capture: bool
) -> Transaction:
    payment = transaction_fresh(payment_id, lock=True)
    if not result.approved:
        return transaction_compare_and_set(
            payment,
            event_type="payment.failed",
            status=TransactionStatus.FAILED,
            decline_code=result.decline_code,
            failure_message=result.message[:200],
            completed_at=timezone.now(),
        )
    payment = transaction_compare_and_set(
        payment, event_type="payment.authorized", status=TransactionStatus.AUTHORIZED
    )
    if capture:
        payment = _capture(payment, payment.amount)
    return payment


def payment_create(
    *,
    merchant: Merchant,
    amount: Any,
    currency: Any,
    token: CardToken | None = None,
    card: CardInput | None = None,
    cvc: str | None = None,
    capture: bool = True,
    external_reference: str | None = None,
    metadata: Any = None,
) -> Transaction:
    """Create a payment: record it, ask the acquirer, record the answer (and capture).

    Three steps, never one long transaction (DESIGN.md section 3):
    1. transaction: insert the payment as ``initiated`` (``payment.created``); commit;
    2. outside any transaction: decrypt the card and call the acquirer (the CVC goes to the
       acquirer only and is never stored);
    3. transaction: compare-and-set to ``authorized`` or ``failed`` with the decline code;
       with ``capture=True`` also to ``captured`` with its journal entry.
    A declined card returns the ``failed`` payment (no journal lines); the caller decides
    how to present it.
    """
    amount = validate_amount(amount)
    currency = normalize_currency(currency)
    metadata = _validate_metadata(metadata)
    if external_reference is not None and len(str(external_reference)) > 100:
        raise InvalidRequest(
            "external_reference is at most 100 characters", param="external_reference"
        )
    if not merchant.is_active:
        raise MerchantInactive("this merchant is suspended and cannot create payments")
    if card is not None:
        cvc = card.cvc
    card_token = _token_for(merchant, token, card)
    if cvc is not None:
        from ledger.cards import validate_cvc

        validate_cvc(cvc, card_token.brand)
    payment = _payment_insert(
        merchant=merchant,
        token=card_token,
        amount=amount,
        currency=currency,
        capture=capture,
        external_reference=external_reference,
        metadata=metadata,
    )
    result = _authorize_outside_transaction(payment, card_token, cvc)
    return _payment_record_authorization(payment.pk, result, capture)


@db.atomic
def payment_capture(
    *, payment: Transaction, amount: Any = None, expected_version: int | None = None
) -> Transaction:
    """Capture an authorized payment, fully or partially; the rest of the hold is released.

    One transaction: compare-and-set ``authorized → captured`` and the capture's journal
    entry (acquirer clearing debited, merchant pending credited); ``payment.captured``.
    """
    fresh = transaction_fresh(payment.pk, merchant_id=payment.merchant_id, lock=True)
    check_expected_version(fresh, expected_version)
    capture_amount = fresh.amount if amount is None else validate_amount(amount)
    if capture_amount > fresh.amount:
        raise AmountExceedsRemaining(
            f"cannot capture {capture_amount}: the authorization is for {fresh.amount}"
        )
    return _capture(fresh, capture_amount)


@db.atomic
def payment_cancel(*, payment: Transaction, expected_version: int | None = None) -> Transaction:
    """Void an authorization: ``authorized → cancelled``; no money moved, no journal entry."""
    fresh = transaction_fresh(payment.pk, merchant_id=payment.merchant_id, lock=True)
    check_expected_version(fresh, expected_version)
    return transaction_compare_and_set(
        fresh,
        event_type="payment.cancelled",
        status=TransactionStatus.CANCELLED,
        completed_at=timezone.now(),
    )
