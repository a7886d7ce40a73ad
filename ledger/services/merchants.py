"""Merchants: the tenants."""

from __future__ import annotations

from ledger.currencies import normalize_currency
from ledger.events import EventType
from ledger.exceptions import InvalidRequest
from ledger.models import Merchant, MerchantStatus
from ledger.services.transitions import row_compare_and_set
from ledger.signals import insert_audited
from payflow.platform import db


@db.atomic
def merchant_create(
    *, name: str, default_currency: str = "EUR", settlement_delay_days: int = 2
) -> Merchant:
    """Create a merchant. One transaction; signals ``merchant.created``."""
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("a merchant needs a name", param="name")
    if not 0 <= settlement_delay_days <= 60:
        raise InvalidRequest(
            "settlement_delay_days must be between 0 and 60", param="settlement_delay_days"
        )
    return insert_audited(
        Merchant(
            name=name[:200],
            default_currency=normalize_currency(default_currency),
            settlement_delay_days=settlement_delay_days,
        ),
        event_type=EventType.MERCHANT_CREATED,
    )


def _merchant_set_status(merchant: Merchant, status: str, event_type: EventType) -> Merchant:
    fresh = Merchant.objects.get(pk=merchant.pk)
    if fresh.status == status:
        return fresh
    return row_compare_and_set(fresh, event_type=event_type, status=status)


@db.atomic
def merchant_suspend(*, merchant: Merchant) -> Merchant:
    """Suspend: the merchant can no longer create payments. Signals ``merchant.suspended``."""
    return _merchant_set_status(merchant, MerchantStatus.SUSPENDED, EventType.MERCHANT_SUSPENDED)


@db.atomic
def merchant_reactivate(*, merchant: Merchant) -> Merchant:
    """Reactivate a suspended merchant. Signals ``merchant.reactivated``."""
    return _merchant_set_status(merchant, MerchantStatus.ACTIVE, EventType.MERCHANT_REACTIVATED)


@db.atomic
def merchant_set_legal_hold(*, merchant: Merchant, legal_hold: bool) -> Merchant:
    """Place or release a legal hold on everything the merchant owns: while it is on, the
    audit retention purge keeps the merchant's audit rows. The reason comes from the audit
    context (``context.bind(reason=...)``). Signals ``merchant.legal_hold_placed`` or
    ``merchant.legal_hold_released``; a no-op when already in that state."""
    fresh = Merchant.objects.get(pk=merchant.pk)
    if fresh.legal_hold == legal_hold:
        return fresh
    event = (
        EventType.MERCHANT_LEGAL_HOLD_PLACED
        if legal_hold
        else EventType.MERCHANT_LEGAL_HOLD_RELEASED
    )
    return row_compare_and_set(fresh, event_type=event, legal_hold=legal_hold)
