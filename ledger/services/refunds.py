"""Refunds (merchant) and chargebacks (operator): money going back to the cardholder."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ledger.currencies import validate_amount
from ledger.events import EventType
from ledger.exceptions import (
    AmountExceedsRemaining,
    InvalidRequest,
    InvalidStateTransition,
)
from ledger.models import (
    AccountKind,
    AcquirerCommand,
    CardToken,
    CommandKind,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.services.acquirer_commands import command_book, command_send_after
from ledger.services.journal import (
    journal_post,
    merchant_account_of,
    platform_account_of,
    tracked_balance_locked,
)
from ledger.services.personal_data import card_token_erased
from ledger.services.transitions import (
    check_expected_version,
    transaction_compare_and_set,
    transaction_fresh,
    transaction_insert,
)
from payflow.platform import context, db

_RETURNABLE = {TransactionStatus.CAPTURED, TransactionStatus.SETTLED}


def _reserve_on_payment(
    payment_id: Any,
    merchant_id: Any,
    amount: Any,
    expected_version: int | None,
    field: str,
) -> tuple[Transaction, int, str]:
    """Add ``amount`` to the payment's refunded or charged-back total by compare-and-set.

    The payment's row is locked first, so what remains refundable and whether the money
    comes out of pending or available (its status) are read and changed under one lock:
    a concurrent refund, chargeback or settlement of the same payment waits and then
    decides from this one's result. Returns the payment after the change, the amount and
    the payment's status before it.
    """
    payment = transaction_fresh(payment_id, merchant_id=merchant_id, lock=True)
    check_expected_version(payment, expected_version)
    if payment.type != TransactionType.PAYMENT:
        raise InvalidRequest("only a payment can be refunded", param="payment")
    if payment.status not in _RETURNABLE:
        raise InvalidStateTransition(
            f"a payment in status {payment.status} cannot be refunded or charged back"
        )
    value = payment.refundable_amount if amount is None else validate_amount(amount)
    if value > payment.refundable_amount or value == 0:
        raise AmountExceedsRemaining(
            f"{value} exceeds what remains refundable on this payment "
            f"({payment.refundable_amount} of {payment.captured_amount} captured)"
        )
    status_before = payment.status
    fully_returned = value == payment.refundable_amount
    if field == "charged_back_amount":
        event_type = EventType.PAYMENT_CHARGED_BACK
    else:
        event_type = (
            EventType.PAYMENT_REFUNDED if fully_returned else EventType.PAYMENT_PARTIALLY_REFUNDED
        )
    payment = transaction_compare_and_set(
        payment,
        event_type=event_type,
        status=TransactionStatus.REFUNDED if fully_returned else None,
        **{field: getattr(payment, field) + value},
    )
    return payment, value, status_before


def _insert_child(
    payment: Transaction, type_: str, status: str, amount: int, reason: str, metadata: Any
) -> Transaction:
    """The refund or chargeback row, under ``payment``. Its free texts are the payment's
    cardholder's personal data; once that cardholder was erased, none is stored
    (``_free_text_for``)."""
    reason, metadata = _free_text_for(payment, reason[:500], metadata or {})
    return transaction_insert(
        merchant=payment.merchant,
        livemode=payment.livemode,
        type=type_,
        status=status,
        amount=amount,
        currency=payment.currency,
        parent=payment,
        reason=reason,
        metadata=metadata,
    )


def _free_text_for(payment: Transaction, reason: str, metadata: Any) -> tuple[str, Any]:
    """The reason and metadata a child of ``payment`` stores.

    Erased means erased: after the cardholder's erasure the money can still go back, but
    no new free text about the person is stored (the row would hold it in plain while its
    entry reads it as erased). New metadata or a merchant's reason is refused; an
    operator's reason (the action's own, already on the action's entry, sealed for the
    operator then: ``payflow.operations``) is not copied onto the row."""
    if not (reason or metadata) or payment.card_token_id is None:
        return reason, metadata
    token = CardToken.objects.only("nonce", "ciphertext").get(pk=payment.card_token_id)
    if not card_token_erased(token):
        return reason, metadata
    if not metadata and reason == context.current().reason:
        return "", {}
    raise InvalidRequest(
        "this payment's cardholder was erased: a refund of it takes no reason or metadata",
        param="metadata" if metadata else "reason",
    )


@db.atomic
def _refund_book(
    payment: Transaction, amount: Any, reason: str, metadata: Any, expected_version: int | None
) -> tuple[Transaction, AcquirerCommand]:
    payment, value, status_before = _reserve_on_payment(
        payment.pk, payment.merchant_id, amount, expected_version, "refunded_amount"
    )
    refund = _insert_child(
        payment, TransactionType.REFUND, TransactionStatus.PENDING, value, reason, metadata
    )
    source = (
        AccountKind.MERCHANT_AVAILABLE
        if status_before == TransactionStatus.SETTLED
        else AccountKind.MERCHANT_PENDING
    )
    journal_post(
        kind="refund",
        merchant=payment.merchant,
        transaction_obj=refund,
        lines=[
            (
                merchant_account_of(payment, source),
                value,
            ),
            (
                platform_account_of(payment, AccountKind.ACQUIRER_CLEARING),
                -value,
            ),
        ],
    )
    return refund, command_book(transaction_obj=refund, kind=CommandKind.REFUND, amount=value)


def refund_create(
    *,
    payment: Transaction,
    amount: Any = None,
    reason: str = "",
    metadata: Any = None,
    expected_version: int | None = None,
) -> Transaction:
    """Refund a captured or settled payment, fully (``amount=None``) or partially.

    One transaction books it: the payment's ``refunded_amount`` grows by compare-and-set
    under the payment's row lock (never above captured minus already returned, also
    enforced by a CHECK constraint), the refund is inserted ``pending`` with a ``refund``
    command for the acquirer, and its journal entry moves the money from the merchant's
    pending balance (unsettled payment) or available balance (settled payment, refused
    with ``InsufficientBalance`` if it does not cover it) back to acquirer clearing.
    Signals ``payment.refunded`` or ``payment.partially_refunded``, ``refund.created``,
    ``journal_entry.posted`` and ``acquirer_command.created``. Then the command is sent
    (``command_send_after``): confirmed, the refund becomes ``refunded``
    (``refund.succeeded``); refused, it fails and the money goes back
    (``acquirer_commands``); unanswered, it stays ``pending`` for the recovery job.
    Allowed for a suspended merchant: the money goes back to the cardholder.
    """
    refund, command = _refund_book(payment, amount, reason, metadata, expected_version)
    return command_send_after(refund, command)


@db.atomic
def chargeback_create(
    *,
    payment: Transaction,
    amount: Any = None,
    reason: str = "",
    expected_version: int | None = None,
) -> Transaction:
    """Book a chargeback the card network imposed (an operator action; cannot be refused).

    One transaction, like a refund; with ``expected_version`` (the version the operator
    saw), a payment changed since is ``ConcurrentUpdate`` instead of a re-read. For a
    settled payment the money comes out of the merchant's available balance; what that
    balance does not cover becomes a receivable owed by the merchant, so no balance ever
    goes negative.
    """
    if not (reason or "").strip():
        raise InvalidRequest("a chargeback needs a reason", param="reason")
    payment, value, status_before = _reserve_on_payment(
        payment.pk, payment.merchant_id, amount, expected_version, "charged_back_amount"
    )
    chargeback = _insert_child(
        payment, TransactionType.CHARGEBACK, TransactionStatus.INITIATED, value, reason, None
    )
    clearing = platform_account_of(payment, AccountKind.ACQUIRER_CLEARING)
    if status_before == TransactionStatus.SETTLED:
        available = merchant_account_of(payment, AccountKind.MERCHANT_AVAILABLE)
        covered = min(value, tracked_balance_locked(available))
        lines = [(available, covered)] if covered else []
        if value - covered:
            receivable = merchant_account_of(payment, AccountKind.MERCHANT_RECEIVABLE)
            lines.append((receivable, value - covered))
    else:
        pending = merchant_account_of(payment, AccountKind.MERCHANT_PENDING)
        lines = [(pending, value)]
    journal_post(
        kind="chargeback",
        merchant=payment.merchant,
        transaction_obj=chargeback,
        lines=[*lines, (clearing, -value)],
    )
    return transaction_compare_and_set(
        chargeback,
        event_type=EventType.CHARGEBACK_SETTLED,
        status=TransactionStatus.SETTLED,
        completed_at=timezone.now(),
    )
