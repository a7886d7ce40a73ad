"""Reads of the ledger that are more than one line."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from ledger.models import (
    Account,
    AccountKind,
    AcquirerCommand,
    CommandKind,
    CommandStatus,
    JournalLine,
    Merchant,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.models.journal import TRACKED_KINDS


def merchant_balances(merchant: Merchant, livemode: bool = False) -> dict[str, dict[str, int]]:
    """Per currency, in one mode: ``pending``, ``available`` and ``receivable``, from the
    journal lines (test and live balances never mix).

    Merchant balances are credit-normal (what the platform owes the merchant), so they are
    minus the sum of the signed lines; ``receivable`` (what the merchant owes) is debit-normal.
    """
    rows = (
        JournalLine.objects.filter(account__merchant=merchant, account__livemode=livemode)
        .values("account__kind", "currency")
        .annotate(total=Sum("amount"))
    )
    names = {
        AccountKind.MERCHANT_PENDING: "pending",
        AccountKind.MERCHANT_AVAILABLE: "available",
        AccountKind.MERCHANT_RECEIVABLE: "receivable",
    }
    balances: dict[str, dict[str, int]] = {}
    for row in rows:
        name = names[row["account__kind"]]
        per_currency = balances.setdefault(row["currency"], {n: 0 for n in names.values()})
        total = int(row["total"])
        per_currency[name] = total if name == "receivable" else -total
    return balances


def transaction_awaits_answer(txn: Transaction) -> bool:
    """Whether ``txn``'s own status waits for the acquirer: a payment whose authorization
    has no recorded answer, a refund the acquirer has not confirmed. Reads nothing."""
    if txn.type == TransactionType.PAYMENT and txn.status == TransactionStatus.INITIATED:
        return True
    return txn.type == TransactionType.REFUND and txn.status == TransactionStatus.PENDING


def transaction_in_flight(txn: Transaction) -> bool:
    """Whether the acquirer's part of ``txn`` is still open: its status waits for an
    answer (``transaction_awaits_answer``), or a command (capture, void, refund) is not
    yet answered."""
    if transaction_awaits_answer(txn):
        return True
    return AcquirerCommand.objects.filter(transaction=txn, status=CommandStatus.PENDING).exists()


INVARIANT_CHECKS: list[Callable[[InvariantReport], None]] = []


def register_invariant_check(check: Callable[[InvariantReport], None]) -> None:
    """Add a check to ``ledger_check_invariants`` (from an app's ``ready()``): a layer above
    the ledger checks its own rows against the ledger's without the ledger importing it."""
    if check not in INVARIANT_CHECKS:
        INVARIANT_CHECKS.append(check)


@dataclass
class InvariantReport:
    entries: int = 0
    lines: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_check_invariants(*, now: datetime.datetime | None = None) -> InvariantReport:
    """Check the whole ledger (the nightly job; read-only).

    - every journal entry balances per currency, and so does the whole journal;
    - every tracked running balance equals minus the sum of its account's lines;
    - one platform account per mode, kind and currency;
    - test and live never meet: children, card tokens and journal lines are of their
      transaction's (entry's) mode;
    - no merchant balance is negative;
    - no payment has more refunded and charged back than captured, and each payment's
      refund and chargeback children (failed refunds aside) add up to its totals;
    - nothing is stuck in flight for longer than ``IN_FLIGHT_ALARM_SECONDS`` (a payment
      ``initiated``, a refund or an acquirer command ``pending``: the recovery job should
      have resolved it), and no capture or void was refused by the acquirer;
    - then every check a higher layer registered (``register_invariant_check``): the API's
      Idempotency-Key records, for one.
    """
    report = InvariantReport(
        entries=JournalLine.objects.values("entry").distinct().count(),
        lines=JournalLine.objects.count(),
    )
    unbalanced = (
        JournalLine.objects.values("entry", "currency")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
    )
    for row in unbalanced[:100]:
        report.problems.append(f"entry {row['entry']} is off by {row['total']} {row['currency']}")
    for row in (
        JournalLine.objects.values("currency").annotate(total=Sum("amount")).exclude(total=0)
    ):
        report.problems.append(f"the journal is off by {row['total']} {row['currency']}")
    _check_accounts(report)
    _check_platform_accounts(report)
    _check_payments(report)
    _check_in_flight(report, now or timezone.now())
    for check in INVARIANT_CHECKS:
        check(report)
    _check_modes(report)
    return report


def _check_in_flight(report: InvariantReport, now: datetime.datetime) -> None:
    since = now - datetime.timedelta(seconds=settings.IN_FLIGHT_ALARM_SECONDS)
    stuck = Transaction.objects.filter(
        Q(type=TransactionType.PAYMENT, status=TransactionStatus.INITIATED)
        | Q(type=TransactionType.REFUND, status=TransactionStatus.PENDING),
        initiated_at__lt=since,
    )
    for pk, type_, status, at in stuck.values_list("pk", "type", "status", "initiated_at")[:100]:
        report.problems.append(
            f"{type_} {pk} has been {status} since {at:%Y-%m-%d %H:%M:%S} UTC "
            "(the recovery job has not resolved it)"
        )
    commands = AcquirerCommand.objects.filter(
        Q(status=CommandStatus.PENDING, created_at__lt=since)
        | Q(status=CommandStatus.FAILED, kind__in=[CommandKind.CAPTURE, CommandKind.VOID])
    )
    for command in commands.order_by("id")[:100]:
        if command.status == CommandStatus.PENDING:
            report.problems.append(
                f"acquirer {command.kind} {command.pk} of payment {command.authorization} has "
                f"been pending since {command.created_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        else:
            report.problems.append(
                f"the acquirer refused {command.kind} {command.pk} of payment "
                f"{command.authorization} ({command.result_code}): reconcile it by hand"
            )


def _check_platform_accounts(report: InvariantReport) -> None:
    duplicated = (
        Account.objects.filter(merchant=None)
        .values("kind", "currency", "livemode")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    for row in duplicated:
        report.problems.append(
            f"{row['n']} platform {row['kind']} accounts in {row['currency']} "
            f"({'live' if row['livemode'] else 'test'} mode; there must be one)"
        )


def lines_totals() -> dict[int, int]:
    """Every account's sum of signed journal lines (one grouped query)."""
    return {
        account: int(total)
        for account, total in JournalLine.objects.values("account")
        .annotate(total=Sum("amount"))
        .values_list("account", "total")
    }


def _check_accounts(report: InvariantReport) -> None:
    sums = lines_totals()
    for account in Account.objects.exclude(merchant=None):
        derived = -int(sums.get(account.pk, 0))
        if account.kind == AccountKind.MERCHANT_RECEIVABLE:
            derived = -derived
        if account.kind in TRACKED_KINDS and account.balance != derived:
            report.problems.append(
                f"account {account} holds {account.balance} but its lines sum to {derived}"
            )
        if derived < 0:
            report.problems.append(f"account {account} is negative: {derived}")


def _check_payments(report: InvariantReport) -> None:
    children = {
        (row["parent"], row["type"]): (int(row["total"]), row["n"])
        for row in Transaction.objects.exclude(parent=None)
        .exclude(status=TransactionStatus.FAILED)
        .values("parent", "type")
        .annotate(total=Sum("amount"), n=Count("id"))
    }
    payments = Transaction.objects.filter(type=TransactionType.PAYMENT).exclude(
        refunded_amount=0, charged_back_amount=0
    )
    for payment in payments.iterator(chunk_size=1000):
        refunds = children.get((payment.pk, TransactionType.REFUND), (0, 0))[0]
        chargebacks = children.get((payment.pk, TransactionType.CHARGEBACK), (0, 0))[0]
        if payment.returned_amount > payment.captured_amount:
            report.problems.append(f"payment {payment.pk} returned more than it captured")
        if refunds != payment.refunded_amount or chargebacks != payment.charged_back_amount:
            report.problems.append(
                f"payment {payment.pk}: children total {refunds}+{chargebacks}, payment says "
                f"{payment.refunded_amount}+{payment.charged_back_amount}"
            )


def _check_modes(report: InvariantReport) -> None:
    """Test and live never meet: a refund or chargeback is of its payment's mode, a payment
    of its card token's, a journal line's account of its entry's."""
    crossings = (
        (
            Transaction.objects.filter(parent__isnull=False).exclude(
                livemode=F("parent__livemode")
            ),
            "pk",
            "transaction {} is not of its payment's mode",
        ),
        (
            Transaction.objects.filter(card_token__isnull=False).exclude(
                livemode=F("card_token__livemode")
            ),
            "pk",
            "payment {} is not of its card token's mode",
        ),
        (
            JournalLine.objects.exclude(account__livemode=F("entry__livemode")),
            "entry_id",
            "journal entry {} posts to an account of another mode",
        ),
    )
    for rows, column, problem in crossings:
        for pk in rows.values_list(column, flat=True).distinct()[:100]:
            report.problems.append(problem.format(pk))


def account_balance_of_lines(account: Account, lines_total: int) -> int:
    """The balance of ``account`` whose signed lines sum to ``lines_total``.

    A merchant's pending and available balances are credit-normal (what the platform owes
    it): minus the sum. Its receivable and the platform's own accounts are debit-normal: the
    sum.
    """
    if account.merchant_id is None or account.kind == AccountKind.MERCHANT_RECEIVABLE:
        return lines_total
    return -lines_total
