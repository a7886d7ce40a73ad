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
    "webhook_endpoint": "we",
    "webhook_delivery": "whd",
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


#: Each public id's prefix and the kind of object it names.
KINDS = {prefix: kind for kind, prefix in PREFIXES.items()}


def parse(public_id: str) -> tuple[str, uuid.UUID] | None:
    """(kind, UUID) of any public id (``pay_…``, ``acct_…``, ``tok_…``, …), or None for
    anything else (what a person typed into a search box, say)."""
    prefix, _, _ = str(public_id).strip().partition("_")
    kind = KINDS.get(prefix)
    if kind is None:
        return None
    try:
        return kind, decode(kind, str(public_id).strip())
    except NotFound:
        return None


def has_public_prefix(text: str) -> bool:
    """Whether ``text`` starts like a public id (a malformed one then names nothing)."""
    prefix, underscore, _ = str(text).strip().partition("_")
    return bool(underscore) and prefix in KINDS


def encode_if_public(kind: str, value: str) -> str:
    """``value`` (a UUID's text) as the public id of ``kind``, or ``value`` itself when that
    kind has no public id or ``value`` is not a UUID."""
    if kind not in PREFIXES:
        return value
    try:
        return encode(kind, uuid.UUID(value))
    except ValueError:
        return value
