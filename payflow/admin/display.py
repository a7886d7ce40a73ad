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


#: The prefix of every public id an operator may type into a search box, and its kind.
PUBLIC_PREFIXES = {prefix: kind for kind, prefix in ids.PREFIXES.items()}


def uuid_of_public_id(term: str) -> uuid.UUID | None:
    """The UUID behind any public id (``pay_…``, ``re_…``, ``acct_…``, ``tok_…``, …), or
    None when ``term`` is not one."""
    prefix, _, hex_part = term.strip().partition("_")
    kind = PUBLIC_PREFIXES.get(prefix)
    if kind is None or not hex_part:
        return None
    try:
        return ids.decode(kind, term.strip())
    except Exception:
        return None


def looks_like_public_id(term: str) -> bool:
    """Whether ``term`` has a public id's prefix (then a malformed one finds nothing)."""
    prefix, underscore, _ = term.strip().partition("_")
    return bool(underscore) and prefix in PUBLIC_PREFIXES
