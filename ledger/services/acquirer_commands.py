"""Acquirer commands: the captures, voids and refunds PayFlow owes the acquirer.

A command is booked (``command_book``) inside the transaction that makes the change it
completes, so the intent to call the acquirer commits with the change or not at all. It is
sent after that commit (``command_send_after``: at once when the booking was the whole
transaction, or on commit of the caller's), and by the recovery job while it stays
``pending``. The acquirer deduplicates by the command's id, so a command sent twice (a
crash after sending, recovery racing a slow request) acts once.

The answer is recorded by compare-and-set (``pending → succeeded|failed``); for a refund
it also completes the refund (``refund.succeeded``) or, refused, gives the money back:
the refund fails and a reversing journal entry returns the amount to the merchant.
A capture or void the acquirer refuses is left ``failed`` for an operator
(``ledger_check_invariants`` reports it): the booking cannot be undone automatically.
"""

from __future__ import annotations

import datetime
import logging
import random
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ledger import acquirer
from ledger.events import EventType
from ledger.models import (
    AccountKind,
    AcquirerCommand,
    CommandKind,
    CommandStatus,
    JournalLine,
    Transaction,
    TransactionStatus,
)
from ledger.services.journal import journal_post, merchant_account_of, platform_account_of
from ledger.services.transitions import (
    row_compare_and_set,
    transaction_compare_and_set,
    transaction_fresh,
)
from ledger.signals import insert_audited
from payflow.platform import db, faults
from payflow.platform.guards import sanctioned_writes

logger = logging.getLogger(__name__)


def command_book(*, transaction_obj: Transaction, kind: str, amount: int) -> AcquirerCommand:
    """Record a command owed to the acquirer; inside the caller's transaction.

    ``transaction_obj`` is the payment (capture, void) or the refund. Signals
    ``acquirer_command.created``.
    """
    payment_id = transaction_obj.parent_id or transaction_obj.pk
    return insert_audited(
        AcquirerCommand(
            transaction=transaction_obj,
            kind=kind,
            authorization=str(payment_id),
            amount=amount,
            currency=transaction_obj.currency,
            next_attempt_at=timezone.now(),
        ),
        event_type=EventType.ACQUIRER_COMMAND_CREATED,
    )


def command_send_after(obj: Transaction, command: AcquirerCommand) -> Transaction:
    """Send ``command`` once its booking has committed; return ``obj`` as it then is.

    Called right after the booking transaction returned. If that was a savepoint inside a
    caller's transaction (an operator action), the send waits for that commit
    (``on_commit``: a rolled-back action sends nothing) and ``obj`` is returned as booked.
    """
    if db.in_transaction():
        transaction.on_commit(lambda: command_send(command_id=command.pk), robust=True)
        return obj
    command_send(command_id=command.pk)
    return transaction_fresh(obj.pk)


def command_send(*, command_id: Any) -> AcquirerCommand:
    """Send a pending command and record the answer. Outside any transaction.

    Never raises for the acquirer's trouble: without an answer the command stays
    ``pending`` with a later ``next_attempt_at`` for the recovery job. A command waits
    while an earlier command of the same authorization is pending (a refund is not sent
    before the capture it refunds is confirmed).
    """
    command = AcquirerCommand.objects.select_related("transaction").get(pk=command_id)
    if command.status != CommandStatus.PENDING:
        return command
    faults.point(f"{command.kind}.booked")
    if _earlier_pending(command):
        return command_postpone(command.pk, "waiting for an earlier command")
    request = acquirer.CommandRequest(
        kind=command.kind,
        reference=str(command.pk),
        authorization=command.authorization,
        amount=command.amount,
        currency=command.currency,
    )
    try:
        answer = acquirer.command(request, livemode=command.transaction.livemode)
    except acquirer.AcquirerUnavailable as exc:
        logger.warning("acquirer did not answer %s %s: %s", command.kind, command.pk, exc)
        return command_postpone(command.pk, type(exc).__name__)
    return command_record_answer(command_id=command.pk, answer=answer)


def command_record_answer(*, command_id: Any, answer: acquirer.AcquirerResult) -> AcquirerCommand:
    """Record the acquirer's answer to a command (sent now, or found by inquiry)."""
    command = _command_settle(command_id, answer)
    faults.point(f"{command.kind}.settled")
    return command


def _earlier_pending(command: AcquirerCommand) -> bool:
    return (
        AcquirerCommand.objects.filter(
            authorization=command.authorization,
            status=CommandStatus.PENDING,
            id__lt=command.pk,
        )
        .exclude(pk=command.pk)
        .exists()
    )


def _retry_delay(attempts: int) -> datetime.timedelta:
    ceiling = min(
        settings.ACQUIRER_RETRY_MAX_SECONDS, settings.ACQUIRER_RETRY_BASE_SECONDS * 2**attempts
    )
    return datetime.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


@db.atomic
def command_postpone(command_id: Any, why: str) -> AcquirerCommand:
    """Count an attempt without an answer and set the next one, later each time."""
    # Delivery bookkeeping (like an outbox event's attempts), not a change of what was
    # agreed with the acquirer: counted without a version or an audit row.
    command = AcquirerCommand.objects.get(pk=command_id)
    with sanctioned_writes():
        AcquirerCommand.objects.filter(pk=command_id, status=CommandStatus.PENDING).update(
            attempts=F("attempts") + 1,
            next_attempt_at=timezone.now() + _retry_delay(command.attempts),
        )
    logger.info("acquirer command %s postponed: %s", command_id, why)
    return AcquirerCommand.objects.get(pk=command_id)


@db.atomic
def _command_settle(command_id: Any, answer: acquirer.AcquirerResult) -> AcquirerCommand:
    """``pending → succeeded|failed`` and its effect, in one transaction. Lock order: the
    payment, then the refund (transaction rows), then the command row."""
    command = AcquirerCommand.objects.select_related("transaction").get(pk=command_id)
    target = command.transaction
    payment = transaction_fresh(target.parent_id or target.pk, lock=True)
    refund = transaction_fresh(target.pk, lock=True) if target.parent_id else None
    command = AcquirerCommand.objects.select_for_update().get(pk=command_id)
    if command.status != CommandStatus.PENDING:
        return command  # recorded by a concurrent sender: the same answer, by idempotency
    status = CommandStatus.SUCCEEDED if answer.approved else CommandStatus.FAILED
    command = row_compare_and_set(
        command,
        event_type=EventType.acquirer_command(status),
        status=status,
        result_code=(answer.decline_code or "")[:40],
        completed_at=timezone.now(),
    )
    if command.kind == CommandKind.REFUND:
        if refund is None:  # a refund command is always on a refund row (its parent: the payment)
            raise RuntimeError(f"refund command {command.pk} is not on a refund")
        _refund_answered(payment, refund, answer)
    elif not answer.approved:
        logger.error(
            "the acquirer refused %s %s of payment %s (%s): an operator must reconcile it",
            command.kind,
            command.pk,
            payment.pk,
            answer.decline_code,
        )
    return command


def _refund_answered(payment: Transaction, refund: Transaction, answer) -> None:
    if refund.status != TransactionStatus.PENDING:
        return
    if answer.approved:
        transaction_compare_and_set(
            refund,
            event_type=EventType.REFUND_SUCCEEDED,
            status=TransactionStatus.REFUNDED,
            completed_at=timezone.now(),
        )
        return
    _refund_reverse(payment, refund, answer)


def _refund_reverse(payment: Transaction, refund: Transaction, answer) -> None:
    """The acquirer refused a refund: the money goes back to the merchant.

    The payment's ``refunded_amount`` shrinks (a fully refunded payment returns to the
    status it was refunded from), a ``refund_reversal`` entry credits the merchant's
    pending balance, or its available balance when the payment is settled by now, and
    the refund fails with the acquirer's code.
    """
    source = (
        JournalLine.objects.filter(entry__transaction=refund, account__merchant__isnull=False)
        .values_list("account__kind", flat=True)
        .first()
    )
    restored = None
    if payment.status == TransactionStatus.REFUNDED:
        restored = (
            TransactionStatus.SETTLED
            if source == AccountKind.MERCHANT_AVAILABLE
            else TransactionStatus.CAPTURED
        )
    payment = transaction_compare_and_set(
        payment,
        event_type=EventType.PAYMENT_REFUND_FAILED,
        status=restored,
        reversal=True,
        refunded_amount=payment.refunded_amount - refund.amount,
    )
    target = (
        AccountKind.MERCHANT_AVAILABLE
        if payment.status == TransactionStatus.SETTLED
        else AccountKind.MERCHANT_PENDING
    )
    journal_post(
        kind="refund_reversal",
        merchant=payment.merchant,
        transaction_obj=refund,
        lines=[
            (
                platform_account_of(payment, AccountKind.ACQUIRER_CLEARING),
                refund.amount,
            ),
            (
                merchant_account_of(payment, target),
                -refund.amount,
            ),
        ],
    )
    transaction_compare_and_set(
        refund,
        event_type=EventType.REFUND_FAILED,
        status=TransactionStatus.FAILED,
        decline_code=(answer.decline_code or "refund_failed")[:40],
        failure_message=(answer.message or "The acquirer refused the refund.")[:200],
        completed_at=timezone.now(),
    )
