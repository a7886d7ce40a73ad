"""How the admin shows and finds the ledger's objects: amounts, public ids, the search box."""

from __future__ import annotations

import uuid

from ledger import ids
from ledger.currencies import to_major
from ledger.models import Transaction

TRANSACTION_PREFIXES = {
    ids.PREFIXES[kind]: kind for kind in ("payment", "refund", "chargeback", "payout")
}


def money(amount: int, currency: str) -> str:
    """``2500 (25.00 EUR)``: the integer the ledger holds, and how a human reads it."""
    return f"{amount} ({to_major(amount, currency)} {currency})"


def public_id(txn: Transaction) -> str:
    return ids.encode(txn.type, txn.pk)


def parse_object_id(term: str) -> tuple[str, uuid.UUID] | None:
    """``("transaction" | "merchant" | "uuid", id)`` for a public or plain id, else None."""
    prefix, _, hex_part = term.partition("_")
    if hex_part and prefix in TRANSACTION_PREFIXES:
        try:
            return "transaction", ids.decode(TRANSACTION_PREFIXES[prefix], term)
        except Exception:
            return None
    if hex_part and prefix == ids.PREFIXES["merchant"]:
        try:
            return "merchant", ids.decode("merchant", term)
        except Exception:
            return None
    try:
        return "uuid", uuid.UUID(term)
    except ValueError:
        return None
