"""Recovery of in-flight work: payments left ``initiated``, acquirer commands left ``pending``.

A crash (or a timeout) between the steps of a flow leaves its intent committed and the
acquirer's part unknown. Everything here resolves such work by **asking the acquirer**
about the reference (``inquire``), never by authorizing again:

- a payment still ``initiated``: the acquirer's answer is recorded as if it had come back
  in time (``authorized``/``captured`` or ``failed``); an authorization the acquirer never
  received is failed and reversed (``payment_abandon``);
- a command still ``pending``: the answer found is recorded; a command the acquirer never
  received is sent (it is idempotent by its reference, so a duplicate acts once).

The beat job (``ledger.recover_in_flight``, every minute) sweeps work older than
``PAYMENT_RECOVERY_AFTER_SECONDS``; a retry with the same Idempotency-Key resumes its own
object at once (``transaction_resume``). Both are safe twice at once: every resolution is a
compare-and-set of the row's status, and the loser finds it resolved. The rows they change
get their normal audit rows and events, with the job (or the retrying key) as the actor.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from ledger import acquirer
from ledger.models import (
    AcquirerCommand,
    CommandStatus,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.services.acquirer_commands import (
    command_postpone,
    command_record_answer,
    command_send,
)
from ledger.services.payments import payment_inquire, payment_record_answer
from payflow.platform import context


@dataclass
class RecoveryReport:
    payments_resolved: int = 0
    payments_unresolved: int = 0
    commands_resolved: int = 0
    commands_unresolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def payment_recover(*, payment_id: Any) -> Transaction:
    """Resolve one payment left ``initiated`` by inquiry; outside any transaction.

    Returns the payment as it then is: still ``initiated`` when the acquirer did not
    answer the inquiry either (the next run asks again).
    """
    payment = Transaction.objects.get(pk=payment_id)
    if payment.status != TransactionStatus.INITIATED:
        return payment
    return payment_record_answer(payment_id=payment.pk, answer=payment_inquire(payment))


def command_resume(*, command_id: Any) -> AcquirerCommand:
    """Resolve one ``pending`` command: record what the acquirer knows of it, or send it
    if the acquirer never received it. Outside any transaction; without an answer the
    command is postponed."""
    command = AcquirerCommand.objects.select_related("transaction").get(pk=command_id)
    if command.status != CommandStatus.PENDING:
        return command
    try:
        answer = acquirer.inquire(str(command.pk), livemode=command.transaction.livemode)
    except acquirer.AcquirerUnavailable as exc:
        return command_postpone(command.pk, type(exc).__name__)
    if answer is None:
        return command_send(command_id=command.pk)
    return command_record_answer(command_id=command.pk, answer=answer)


def transaction_resume(*, transaction_id: Any) -> Transaction:
    """Resolve whatever is still in flight for one transaction: its authorization if it is
    an ``initiated`` payment, then its ``pending`` commands, oldest first. Returns the
    transaction as it then is."""
    txn = Transaction.objects.get(pk=transaction_id)
    if txn.type == TransactionType.PAYMENT and txn.status == TransactionStatus.INITIATED:
        payment_recover(payment_id=txn.pk)
    pending = AcquirerCommand.objects.filter(transaction=txn, status=CommandStatus.PENDING)
    for command_id in pending.order_by("id").values_list("pk", flat=True):
        command_resume(command_id=command_id)
    return Transaction.objects.get(pk=transaction_id)


def in_flight_recover(
    *, older_than: datetime.timedelta | None = None, batch_size: int = 200
) -> RecoveryReport:
    """The recovery job: resolve payments ``initiated`` and commands ``pending`` for longer
    than ``older_than`` (``PAYMENT_RECOVERY_AFTER_SECONDS``), oldest first, one batch of
    each. Each resolution is its own transaction."""
    if older_than is None:
        older_than = datetime.timedelta(seconds=settings.PAYMENT_RECOVERY_AFTER_SECONDS)
    now = timezone.now()
    report = RecoveryReport()
    payments = Transaction.objects.filter(
        type=TransactionType.PAYMENT,
        status=TransactionStatus.INITIATED,
        initiated_at__lte=now - older_than,
    ).order_by("initiated_at")
    with context.bind(reason="resolved by inquiry: recovery of in-flight work"):
        for payment_id in payments.values_list("pk", flat=True)[:batch_size]:
            resolved = payment_recover(payment_id=payment_id)
            if resolved.status == TransactionStatus.INITIATED:
                report.payments_unresolved += 1
            else:
                report.payments_resolved += 1
        commands = AcquirerCommand.objects.filter(
            status=CommandStatus.PENDING,
            created_at__lte=now - older_than,
            next_attempt_at__lte=now,
        ).order_by("id")
        for command_id in commands.values_list("pk", flat=True)[:batch_size]:
            resumed = command_resume(command_id=command_id)
            if resumed.status == CommandStatus.PENDING:
                report.commands_unresolved += 1
            else:
                report.commands_resolved += 1
    return report
