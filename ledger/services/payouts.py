"""Payouts: a merchant's available balance sent to its bank account."""

from __future__ import annotations

from typing import Any

from ledger.currencies import normalize_currency, validate_amount
from ledger.events import EventType
from ledger.exceptions import InvalidRequest, MerchantInactive
from ledger.models import AccountKind, Merchant, Transaction, TransactionStatus, TransactionType
from ledger.services.journal import journal_post, merchant_account_of, platform_account_of
from ledger.services.transitions import transaction_compare_and_set, transaction_insert
from payflow.platform import db, faults


def payout_create(
    *,
    merchant: Merchant,
    livemode: bool = False,
    amount: Any,
    currency: Any,
    external_reference: str | None = None,
    metadata: Any = None,
) -> Transaction:
    """Pay out part of the mode's available balance; never more than it holds (a live
    payout can only spend live money).

    One transaction: the payout is inserted, its journal entry debits the merchant's
    available balance (one ``UPDATE … WHERE balance >= amount``, refused with
    ``InsufficientBalance`` when it does not cover the amount — also enforced by a CHECK
    constraint) and credits payout clearing, and it moves to ``pending`` (in transit).
    A refused payout leaves nothing behind. No call leaves PayFlow here: the bank transfer
    is the settlement's (``settlement_run`` marks it ``settled``). A suspended merchant
    cannot pay out (``MerchantInactive``).
    """
    payout = _payout_book(
        merchant=merchant,
        livemode=livemode,
        amount=amount,
        currency=currency,
        external_reference=external_reference,
        metadata=metadata,
    )
    faults.point("payout.committed")
    return payout


@db.atomic
def _payout_book(
    *,
    merchant: Merchant,
    livemode: bool,
    amount: Any,
    currency: Any,
    external_reference: Any,
    metadata: Any,
) -> Transaction:
    amount = validate_amount(amount)
    currency = normalize_currency(currency)
    if external_reference is not None and len(str(external_reference)) > 100:
        raise InvalidRequest(
            "external_reference is at most 100 characters", param="external_reference"
        )
    if not Merchant.objects.filter(pk=merchant.pk, status="active").exists():
        raise MerchantInactive("this merchant is suspended and cannot create payouts")
    payout = transaction_insert(
        merchant=merchant,
        livemode=livemode,
        type=TransactionType.PAYOUT,
        status=TransactionStatus.INITIATED,
        amount=amount,
        currency=currency,
        external_reference=external_reference,
        metadata=metadata or {},
    )
    journal_post(
        kind="payout",
        merchant=merchant,
        transaction_obj=payout,
        lines=[
            (
                merchant_account_of(payout, AccountKind.MERCHANT_AVAILABLE),
                amount,
            ),
            (platform_account_of(payout, AccountKind.PAYOUT_CLEARING), -amount),
        ],
    )
    payout = transaction_compare_and_set(
        payout, event_type=EventType.PAYOUT_PENDING, status=TransactionStatus.PENDING
    )
    faults.point("payout.booking")  # a crash here: the transaction is rolled back
    return payout
