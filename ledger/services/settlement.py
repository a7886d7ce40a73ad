"""Settlement: captured payments become available after the merchant's delay."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from ledger.events import EventType
from ledger.exceptions import ConcurrentUpdate, InvalidStateTransition
from ledger.models import AccountKind, Merchant, Transaction, TransactionStatus, TransactionType
from ledger.services.journal import journal_post, merchant_account_of, platform_account_of
from ledger.services.transitions import transaction_compare_and_set, transaction_fresh
from payflow.platform import db


@dataclass
class SettlementReport:
    payments_settled: int = 0
    payouts_settled: int = 0
    skipped: int = 0
    amounts: dict[str, int] = field(default_factory=dict)


@db.atomic
def _settle_payment(payment_id: Any, now: datetime.datetime) -> int:
    payment = transaction_fresh(payment_id, lock=True)
    net = payment.captured_amount - payment.returned_amount
    transaction_compare_and_set(
        payment,
        event_type=EventType.PAYMENT_SETTLED,
        status=TransactionStatus.SETTLED,
        completed_at=now,
    )
    if net > 0:
        journal_post(
            kind="settlement",
            merchant=payment.merchant,
            transaction_obj=payment,
            lines=[
                (
                    merchant_account_of(payment, AccountKind.MERCHANT_PENDING),
                    net,
                ),
                (
                    merchant_account_of(payment, AccountKind.MERCHANT_AVAILABLE),
                    -net,
                ),
            ],
        )
    return net


@db.atomic
def _settle_payout(payout_id: Any, now: datetime.datetime) -> int:
    payout = transaction_fresh(payout_id, lock=True)
    transaction_compare_and_set(
        payout, event_type=EventType.PAYOUT_PAID, status=TransactionStatus.SETTLED, completed_at=now
    )
    journal_post(
        kind="payout_paid",
        merchant=payout.merchant,
        transaction_obj=payout,
        lines=[
            (
                platform_account_of(payout, AccountKind.PAYOUT_CLEARING),
                payout.amount,
            ),
            (
                platform_account_of(payout, AccountKind.SETTLEMENT_BANK),
                -payout.amount,
            ),
        ],
    )
    return payout.amount


def _due(query, batch_size: int) -> list[Any]:
    return list(
        query.order_by("captured_at", "initiated_at").values_list("pk", flat=True)[:batch_size]
    )


def settlement_run(
    *, now: datetime.datetime | None = None, batch_size: int = 500
) -> SettlementReport:
    """Settle what is due: payments captured at least ``settlement_delay_days`` ago, and
    payouts in transit for ``PAYOUT_TRANSIT_DAYS``.

    Each payment or payout is its own small transaction (compare-and-set to ``settled`` and
    its journal entry), so a run can stop anywhere and two runs can overlap: the loser of
    a race sees ``ConcurrentUpdate`` or an illegal transition and skips the row.
    """
    now = now or timezone.now()
    report = SettlementReport()
    for merchant in Merchant.objects.all().only("pk", "settlement_delay_days"):
        cutoff = now - datetime.timedelta(days=merchant.settlement_delay_days)
        due = Transaction.objects.filter(
            merchant=merchant,
            type=TransactionType.PAYMENT,
            status=TransactionStatus.CAPTURED,
            captured_at__lte=cutoff,
        )
        for payment_id in _due(due, batch_size):
            _settle_one(_settle_payment, payment_id, now, report, "payments_settled")
    transit_days = getattr(settings, "PAYOUT_TRANSIT_DAYS", 1)
    payouts = Transaction.objects.filter(
        type=TransactionType.PAYOUT,
        status=TransactionStatus.PENDING,
        initiated_at__lte=now - datetime.timedelta(days=transit_days),
    )
    for payout_id in _due(payouts, batch_size):
        _settle_one(_settle_payout, payout_id, now, report, "payouts_settled")
    return report


def _settle_one(settle, pk, now, report: SettlementReport, counter: str) -> None:
    try:
        settle(pk, now)
    except (ConcurrentUpdate, InvalidStateTransition):
        report.skipped += 1
        return
    setattr(report, counter, getattr(report, counter) + 1)
