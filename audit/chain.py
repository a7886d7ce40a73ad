"""The hash chain: canonical encoding (version 1) and the entry hash.

Canonical encoding, version 1, of an audit row: a JSON object with exactly the keys
``action, actor_id, actor_label, actor_type, created_at, event_type, ip, lane, new_values,
object_id, object_type, old_values, reason, request_id, seq, task_id, user_agent``,
serialized with keys sorted at every level, separators ``,`` and ``:``, UTF-8 without
escaping non-ASCII, where every integer and decimal anywhere (including inside
``old_values``/``new_values``) is written as a JSON string of its decimal digits, booleans
and null as JSON literals, and ``created_at`` as ISO 8601 UTC with microseconds
(``2026-11-21T19:41:24.180214+00:00``). Unambiguous: one row has exactly one encoding.

``hash = SHA-256(b"payflow-audit-entry/1\\x00" ‖ bytes.fromhex(prev_hash) ‖ encoding)``;
the first entry of a lane has ``prev_hash`` = 64 zeros.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import zlib
from typing import Any

from django.conf import settings

ENCODING_VERSION = 1
DOMAIN_TAG = b"payflow-audit-entry/1\x00"
CANONICAL_FIELDS = (
    "action",
    "actor_id",
    "actor_label",
    "actor_type",
    "created_at",
    "event_type",
    "ip",
    "lane",
    "new_values",
    "object_id",
    "object_type",
    "old_values",
    "reason",
    "request_id",
    "seq",
    "task_id",
    "user_agent",
)


def lane_for(object_type: str, object_id: str) -> int:
    """Stable hash of the object's type and id: one object's history is one lane."""
    return zlib.crc32(f"{object_type}:{object_id}".encode()) % settings.AUDIT_LANES


def _canonical_value(value: Any) -> Any:
    # Exact types first (what rows hold almost always: str, None, int, dict, list); anything
    # else, subclasses included, takes the general rules below. The result is the same.
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        return str(value)
    if kind is dict:
        return {str(key): _canonical_value(item) for key, item in value.items()}
    if kind is list:
        return [_canonical_value(item) for item in value]
    return _canonical_other(value)


def _canonical_other(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit rows")
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {str(key): _canonical_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(item) for item in value]
    return str(value)


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    body = {name: _canonical_value(fields[name]) for name in CANONICAL_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: str, encoding: bytes) -> str:
    return hashlib.sha256(DOMAIN_TAG + bytes.fromhex(prev_hash) + encoding).hexdigest()


def row_fields(entry: Any) -> dict[str, Any]:
    """The canonical fields of an ``AuditEntry`` (or any object with those attributes)."""
    return {name: getattr(entry, name) for name in CANONICAL_FIELDS}


def recompute_hash(entry: Any) -> str:
    return entry_hash(entry.prev_hash, canonical_bytes(row_fields(entry)))
