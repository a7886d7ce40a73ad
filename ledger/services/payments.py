"""Payments: create (authorize, optionally capture), capture, cancel; abandonment."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ledger import acquirer
from ledger.cards import validate_cvc
from ledger.currencies import normalize_currency, validate_amount
from ledger.events import EventType
from ledger.exceptions import (
    AmountExceedsRemaining,
    ConcurrentUpdate,
    InvalidRequest,
    LiveModeUnavailable,
    MerchantInactive,
    NotFound,
    VaultError,
)
from ledger.models import (
    AccountKind,
    AcquirerCommand,
    CaptureMethod,
    CardToken,
    CommandKind,
    Merchant,
    MerchantStatus,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.services.acquirer_commands import command_book, command_send_after
from ledger.services.journal import journal_post, merchant_account_of, platform_account_of
from ledger.services.transitions import (
    check_expected_version,
    transaction_compare_and_set,
    transaction_compare_and_set_steps,
    transaction_fresh,
    transaction_insert,
)
from ledger.services.vault import card_tokenize
from ledger.vault import reveal_card_for_acquirer
from payflow.platform import db, faults

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


def _token_for(
    merchant: Merchant, livemode: bool, token: CardToken | None, card: CardInput | None
) -> CardToken:
    if (token is None) == (card is None):
        raise InvalidRequest("send exactly one of card or token", param="card")
    if card is not None:
        return card_tokenize(
            merchant=merchant,
            livemode=livemode,
            number=card.number,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            holder_name=card.holder_name,
        )
    if token is None or token.merchant_id != merchant.pk or token.livemode != livemode:
        raise NotFound("no such token", param="token")
    return token


def _require_active(merchant_id: Any, doing: str) -> None:
    # Read inside the caller's transaction: a suspension committed a moment ago wins.
    if not Merchant.objects.filter(pk=merchant_id, status=MerchantStatus.ACTIVE).exists():
        raise MerchantInactive(f"this merchant is suspended and cannot {doing}")


@db.atomic
def _payment_insert(
    *,
    merchant: Merchant,
    livemode: bool,
    token: CardToken,
    amount: int,
    currency: str,
    capture: bool,
    external_reference: str | None,
    metadata: dict,
) -> Transaction:
    # The merchant's status was checked on the ``merchant`` given (for the API: the key's
    # merchant, read at most API_CACHE_SECONDS ago): a payment is one INSERT here.
    return transaction_insert(
        merchant=merchant,
        livemode=livemode,
        type=TransactionType.PAYMENT,
        status=TransactionStatus.INITIATED,
        amount=amount,
        currency=currency,
        card_token=token,
        capture_method=CaptureMethod.AUTOMATIC if capture else CaptureMethod.MANUAL,
        external_reference=external_reference,
        metadata=metadata,
    )


class _NotReceived:
    """The acquirer says it never received the authorization (after a timeout)."""


NOT_RECEIVED = _NotReceived()


def _ask_acquirer(
    payment: Transaction, token: CardToken, cvc: str | None
) -> acquirer.AcquirerResult | _NotReceived | None:
    """Authorize outside any transaction. Returns the answer; ``NOT_RECEIVED`` when the
    call timed out and an inquiry found nothing; ``None`` when the outcome is unknown
    (no answer, and no answer to the inquiry either)."""
    try:
        card = reveal_card_for_acquirer(token)
    except VaultError as exc:
        # Our fault, not the cardholder's: a tampered ciphertext or a key missing from the
        # keyring. Nothing reached the acquirer; the payment fails with its own code and
        # operators are told loudly.
        logger.error(
            "card token %s of payment %s cannot be decrypted: %s", token.pk, payment.pk, exc
        )
        return acquirer.AcquirerResult(
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
        capture=payment.capture_method == CaptureMethod.AUTOMATIC,
    )
    try:
        return acquirer.authorize(request, livemode=payment.livemode)
    except acquirer.AcquirerUnavailable as exc:
        logger.warning("acquirer did not answer payment %s: %s", payment.pk, type(exc).__name__)
    return payment_inquire(payment)


def payment_inquire(payment: Transaction) -> acquirer.AcquirerResult | _NotReceived | None:
    """Ask the acquirer what became of the payment's authorization (outside any
    transaction): its answer, ``NOT_RECEIVED``, or ``None`` when the inquiry went
    unanswered."""
    try:
        answer = acquirer.inquire(str(payment.pk), livemode=payment.livemode)
    except acquirer.AcquirerUnavailable as exc:
        logger.warning("acquirer inquiry for payment %s failed: %s", payment.pk, type(exc).__name__)
        return None
    return NOT_RECEIVED if answer is None else answer


def _capture_step(amount: int) -> tuple[EventType, dict[str, Any]]:
    now = timezone.now()
    return (
        EventType.PAYMENT_CAPTURED,
        {
            "status": TransactionStatus.CAPTURED,
            "captured_amount": amount,
            "captured_at": now,
            "completed_at": now,
        },
    )


def _post_capture(payment: Transaction, amount: int) -> None:
    """The capture's journal entry: acquirer clearing debited, merchant pending credited."""
    journal_post(
        kind="capture",
        merchant_id=payment.merchant_id,
        transaction_obj=payment,
        lines=[
            (platform_account_of(payment, AccountKind.ACQUIRER_CLEARING), amount),
            (merchant_account_of(payment, AccountKind.MERCHANT_PENDING), -amount),
        ],
    )


def _capture(payment: Transaction, amount: int) -> Transaction:
    payment = transaction_compare_and_set_steps(payment, [_capture_step(amount)])
    _post_capture(payment, amount)
    return payment


def _outcome_compare_and_set(payment: Transaction, result: acquirer.AcquirerResult) -> Transaction:
    """Compare-and-set ``payment`` (as read: ``initiated``) to the answer's outcome: failed,
    authorized, or for a sale authorized then captured (two entries and two events, one
    UPDATE). The journal entry is ``_post_outcome``'s."""
    if not result.approved:
        return transaction_compare_and_set(
            payment,
            event_type=EventType.PAYMENT_FAILED,
            status=TransactionStatus.FAILED,
            decline_code=result.decline_code,
            failure_message=result.message[:200],
            completed_at=timezone.now(),
        )
    authorized: tuple[EventType, dict[str, Any]] = (
        EventType.PAYMENT_AUTHORIZED,
        {"status": TransactionStatus.AUTHORIZED},
    )
    if payment.capture_method != CaptureMethod.AUTOMATIC:
        return transaction_compare_and_set_steps(payment, [authorized])
    # The authorization was a sale: the acquirer took the money in the same call.
    return transaction_compare_and_set_steps(payment, [authorized, _capture_step(payment.amount)])


def _post_outcome(payment: Transaction) -> Transaction:
    if payment.status == TransactionStatus.CAPTURED:
        _post_capture(payment, payment.captured_amount)
    return payment


@db.atomic
def _payment_record_authorization(
    payment_id: Any, result: acquirer.AcquirerResult, known: Transaction | None = None
) -> Transaction:
    if known is not None and known.status == TransactionStatus.INITIATED:
        # The row as this request inserted it: compare-and-set on that version, no read.
        # Zero rows (the recovery job or a retry got there first): read it as below.
        try:
            recorded = _outcome_compare_and_set(copy.copy(known), result)
        except ConcurrentUpdate:
            recorded = None
        if recorded is not None:
            return _post_outcome(recorded)
    payment = transaction_fresh(payment_id, lock=True)
    if payment.status != TransactionStatus.INITIATED:
        # Recorded already (the recovery job, or a retry resuming it): the acquirer is
        # idempotent by reference, so that was its answer to this same authorization.
        return payment
    return _post_outcome(_outcome_compare_and_set(payment, result))


@db.atomic
def _payment_abandon_book(payment_id: Any) -> tuple[Transaction, AcquirerCommand | None]:
    payment = transaction_fresh(payment_id, lock=True)
    if payment.status != TransactionStatus.INITIATED:
        return payment, None
    payment = transaction_compare_and_set(
        payment,
        event_type=EventType.PAYMENT_FAILED,
        status=TransactionStatus.FAILED,
        decline_code="acquirer_unavailable",
        failure_message="The acquirer did not confirm the payment; no money was taken.",
        completed_at=timezone.now(),
    )
    # A reversal by reference: should the authorization reach the acquirer after all, it
    # is refused (or, if it got there first, voided), so no hold outlives the failure.
    return payment, command_book(
        transaction_obj=payment, kind=CommandKind.VOID, amount=payment.amount
    )


def payment_abandon(*, payment_id: Any) -> Transaction:
    """Fail a payment the acquirer says it never received, and reverse it there.

    One transaction: ``initiated → failed`` (``acquirer_unavailable``) with a ``void``
    command for the authorization's reference, sent after the commit. A no-op for a
    payment no longer ``initiated``.
    """
    payment, command = _payment_abandon_book(payment_id)
    return payment if command is None else command_send_after(payment, command)


def payment_record_answer(
    *,
    payment_id: Any,
    answer: acquirer.AcquirerResult | _NotReceived | None,
    known: Transaction | None = None,
) -> Transaction:
    """Record what the acquirer said of an authorization (its answer, or an inquiry's):
    approved → ``authorized`` (and ``captured`` with its journal entry for automatic
    capture), declined → ``failed``, never received → ``payment_abandon``, unknown → left
    ``initiated`` for the recovery job. ``known``: the payment as the caller last wrote it
    (its intent), compare-and-set without reading it again."""
    if answer is None:
        return transaction_fresh(payment_id)
    if isinstance(answer, _NotReceived):
        return payment_abandon(payment_id=payment_id)
    return _payment_record_authorization(payment_id, answer, known)


def payment_create(
    *,
    merchant: Merchant,
    livemode: bool = False,
    amount: Any,
    currency: Any,
    token: CardToken | None = None,
    card: CardInput | None = None,
    cvc: str | None = None,
    capture: bool = True,
    external_reference: str | None = None,
    metadata: Any = None,
) -> Transaction:
    """Create a payment: record the intent, ask the acquirer, record the answer.

    Steps, never one long transaction (DESIGN.md section 3):
    1. transaction: insert the payment as ``initiated`` (``payment.created``): the intent,
       with everything recovery needs (amount, currency, token, capture method; the
       payment's id is the acquirer reference); commit;
    2. outside any transaction: decrypt the card and authorize, with capture in the same
       call for automatic capture (the CVC goes to the acquirer only and is never
       stored). No answer within ``ACQUIRER_TIMEOUT_SECONDS``: one inquiry by reference;
    3. transaction: compare-and-set to ``authorized`` or ``failed`` with the decline code
       (and for automatic capture to ``captured`` with its journal entry).
    When neither the call nor the inquiry is answered, the payment is returned still
    ``initiated``: the recovery job resolves it by inquiry. A crash anywhere leaves either
    nothing or an ``initiated`` payment for that job. A declined card returns the
    ``failed`` payment (no journal lines); the caller decides how to present it.
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
    if not acquirer.acquirer_configured(livemode):
        raise LiveModeUnavailable(
            "Live mode cannot take payments yet: no live acquirer is configured on this "
            "platform. Use a test key (sk_test_…) meanwhile."
        )
    if card is not None:
        cvc = card.cvc
    card_token = _token_for(merchant, livemode, token, card)
    if cvc is not None:
        validate_cvc(cvc, card_token.brand)
    faults.point("payment.before_intent")
    payment = _payment_insert(
        merchant=merchant,
        livemode=livemode,
        token=card_token,
        amount=amount,
        currency=currency,
        capture=capture,
        external_reference=external_reference,
        metadata=metadata,
    )
    faults.point("payment.intent_committed")
    answer = _ask_acquirer(payment, card_token, cvc)
    payment = payment_record_answer(payment_id=payment.pk, answer=answer, known=payment)
    faults.point("payment.outcome_committed")
    return payment


@db.atomic
def _capture_book(
    payment: Transaction, amount: Any, expected_version: int | None
) -> tuple[Transaction, AcquirerCommand]:
    fresh = transaction_fresh(payment.pk, merchant_id=payment.merchant_id, lock=True)
    check_expected_version(fresh, expected_version)
    _require_active(fresh.merchant_id, "capture payments")
    capture_amount = fresh.amount if amount is None else validate_amount(amount)
    if capture_amount > fresh.amount:
        raise AmountExceedsRemaining(
            f"cannot capture {capture_amount}: the authorization is for {fresh.amount}"
        )
    captured = _capture(fresh, capture_amount)
    return captured, command_book(
        transaction_obj=captured, kind=CommandKind.CAPTURE, amount=capture_amount
    )


def payment_capture(
    *, payment: Transaction, amount: Any = None, expected_version: int | None = None
) -> Transaction:
    """Capture an authorized payment, fully or partially; the rest of the hold is released.

    One transaction: compare-and-set ``authorized → captured``, the capture's journal
    entry (acquirer clearing debited, merchant pending credited) and a ``capture``
    command for the acquirer (``payment.captured``, ``acquirer_command.created``); the
    command is sent after the commit (``command_send_after``). A suspended merchant
    cannot capture (``MerchantInactive``).
    """
    captured, command = _capture_book(payment, amount, expected_version)
    return command_send_after(captured, command)


@db.atomic
def _cancel_book(
    payment: Transaction, expected_version: int | None
) -> tuple[Transaction, AcquirerCommand]:
    fresh = transaction_fresh(payment.pk, merchant_id=payment.merchant_id, lock=True)
    check_expected_version(fresh, expected_version)
    cancelled = transaction_compare_and_set(
        fresh,
        event_type=EventType.PAYMENT_CANCELLED,
        status=TransactionStatus.CANCELLED,
        completed_at=timezone.now(),
    )
    return cancelled, command_book(
        transaction_obj=cancelled, kind=CommandKind.VOID, amount=cancelled.amount
    )


def payment_cancel(*, payment: Transaction, expected_version: int | None = None) -> Transaction:
    """Void an authorization: ``authorized → cancelled`` and a ``void`` command for the
    acquirer (sent after the commit); no money moved, no journal entry. Allowed for a
    suspended merchant: it releases the cardholder's hold."""
    cancelled, command = _cancel_book(payment, expected_version)
    return command_send_after(cancelled, command)


@db.atomic
def payment_update(
    *, payment: Transaction, metadata: Any, expected_version: int | None = None
) -> Transaction:
    """Change a payment's ``metadata`` (Stripe's rules: the given keys are set, a key given
    an empty string is removed, the others are kept; at most 50 keys in the result).

    One compare-and-set of the locked row (``payment.updated``, audited and published like
    every change); the status and the money are untouched, so it is allowed in any status
    and for a suspended merchant. Nothing changes: the payment as it is, no event.
    """
    fresh = transaction_fresh(payment.pk, merchant_id=payment.merchant_id, lock=True)
    check_expected_version(fresh, expected_version)
    changes = _validate_metadata(metadata)
    merged = {**fresh.metadata, **changes}
    merged = {key: value for key, value in merged.items() if value != ""}
    _validate_metadata(merged)
    if merged == fresh.metadata:
        return fresh
    return transaction_compare_and_set(fresh, event_type=EventType.PAYMENT_UPDATED, metadata=merged)
