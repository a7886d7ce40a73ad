"""Public object ids: a type prefix and the UUIDv7 hex (``pay_0193…``), like merchants expect."""

from __future__ import annotations

import uuid

from ledger.exceptions import NotFound

PREFIXES = {
    "payment": "pay",
    "refund": "re",
    "chargeback": "cb",
    "payout": "po",
    "token": "tok",
    "event": "evt",
    "merchant": "acct",
}


def encode(kind: str, value: uuid.UUID) -> str:
    return f"{PREFIXES[kind]}_{value.hex}"


def decode(kind: str, public_id: str) -> uuid.UUID:
    """The UUID behind a public id, or ``NotFound`` (a malformed id is simply not found)."""
    prefix, _, hex_part = str(public_id).partition("_")
    if prefix != PREFIXES[kind] or len(hex_part) != 32:
        raise NotFound(f"no such {kind}: {public_id}")
    try:
        return uuid.UUID(hex=hex_part)
    except ValueError as exc:
        raise NotFound(f"no such {kind}: {public_id}") from exc
