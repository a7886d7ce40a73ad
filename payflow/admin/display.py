"""How the admin shows and finds the ledger's objects: amounts, public ids, the search box."""

from __future__ import annotations

import uuid

from django.utils.html import format_html

from ledger import ids
from ledger.currencies import to_major
from ledger.models import Transaction

TRANSACTION_PREFIXES = {
    ids.PREFIXES[kind]: kind for kind in ("payment", "refund", "chargeback", "payout")
}


def money(amount: int, currency: str) -> str:
    """``25.00 EUR``: how a person reads the minor units the ledger holds (messages)."""
    return f"{to_major(amount, currency)} {currency}"


def money_html(amount: int, currency: str) -> str:
    """``money`` for a page, the integer the ledger holds on hover."""
    return format_html(
        '<span class="money" title="{} minor units">{}</span>', amount, money(amount, currency)
    )


def public_id(txn: Transaction) -> str:
    return ids.encode(txn.type, txn.pk)


def parse_object_id(term: str) -> tuple[str, uuid.UUID] | None:
    """``("transaction" | "merchant" | "uuid", id)`` for a public or plain id, else None."""
    parsed = ids.parse(term)
    if parsed is not None and (
        parsed[0] in TRANSACTION_PREFIXES.values() or parsed[0] == "merchant"
    ):
        return ("merchant" if parsed[0] == "merchant" else "transaction"), parsed[1]
    if ids.has_public_prefix(term):
        return None
    try:
        return "uuid", uuid.UUID(term)
    except ValueError:
        return None


def uuid_of_public_id(term: str) -> uuid.UUID | None:
    """The UUID behind any public id (``ledger.ids.parse``), or None."""
    parsed = ids.parse(term)
    return parsed[1] if parsed else None


looks_like_public_id = ids.has_public_prefix
