"""Audit entries as the write path makes them: canonical bytes, hash, per-object chain.

The platform layer knows how an entry is encoded and hashed (``docs/audit-formats.md``
§1), so a service can compute the hash of the entry for a change *before* it writes the
change, and store it on the row in the same compare-and-set ``UPDATE``
(``audit_hash``): the row always names its latest entry, and no other row is read or
locked for auditing. The entries themselves are inserted just before COMMIT, all of one
transaction in one multi-row ``INSERT``, by the writer the audit app installs
(``set_writer``).

``prepare`` builds an entry (refusing a change without an actor); ``stage`` queues it for
the transaction's insert. An entry staged with ``prev_hash=None`` (objects without an
``audit_hash`` column: an operator's job, a login name) is chained by the writer to that
object's latest entry when the transaction commits.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payflow.platform import context, db, personal

ENCODING_VERSION = 2
DOMAIN_TAG = b"payflow-audit-entry/2\x00"
GENESIS_HASH = "0" * 64
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


class MissingActor(RuntimeError):
    """A change with nobody named as its actor: refused (PCI-DSS 10.2: who did it)."""


def _value(value: Any) -> Any:
    # Exact types first (what snapshots hold: str, None, bool, int, dict, list).
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        return str(value)
    if kind is dict:
        return {str(key): _value(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_value(item) for item in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit entries: use minor units")
    if isinstance(value, datetime.datetime):
        return format_time(value)
    if isinstance(value, dict):
        return {str(key): _value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_value(item) for item in value]
    return str(value)


def canonical_values(value: Any) -> Any:
    """``value`` as the canonical bytes hold it once parsed back (integers as strings,
    times formatted): what reconciliation compares a row's snapshot with."""
    return _value(value)


def format_time(moment: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (UTC, six fraction digits)."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(datetime.UTC).strftime(_TIME_FORMAT)


def encode_body(fields: dict[str, Any]) -> bytes:
    """The canonical bytes of an entry (§1.1). ``fields`` has the members of §1.1 except
    ``v``; ``created_at`` is an aware datetime or its formatted text."""
    created = fields["created_at"]
    body = {
        "action": fields["action"],
        # a person's label is sealed (an object, ``payflow.platform.personal``)
        "actor": {
            key: value if type(value) is dict else str(value)
            for key, value in fields["actor"].items()
        },
        "created_at": created if isinstance(created, str) else format_time(created),
        "event_type": fields["event_type"],
        "ip": fields["ip"],
        "new": _value(fields["new"]),
        "object_id": fields["object_id"],
        "object_type": fields["object_type"],
        "old": _value(fields["old"]),
        "reason": fields["reason"],
        "request_id": fields["request_id"],
        "task_id": fields["task_id"],
        "user_agent": fields["user_agent"],
        "v": str(ENCODING_VERSION),
    }
    # sort_keys + these separators + ensure_ascii=False is exactly §1.1's encoding
    # (tests/audit/test_tlog.py checks the escaping over every code point).
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: str, body: bytes) -> str:
    """``SHA-256("payflow-audit-entry/2" ‖ 0x00 ‖ prev_hash ‖ body)``, hex."""
    return hashlib.sha256(DOMAIN_TAG + bytes.fromhex(prev_hash) + body).hexdigest()


@dataclass(slots=True)
class Entry:
    """An entry ready to insert (``hash`` is None until ``prev_hash`` is known)."""

    object_type: str
    object_id: str
    action: str
    event_type: str
    actor_type: str
    actor_id: str
    request_id: str
    created_at: datetime.datetime
    body: bytes
    prev_hash: str | None
    hash: str | None


def prepare(
    *,
    object_type: str,
    object_id: str,
    prev_hash: str | None,
    action: str,
    event_type: str,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any] | None,
) -> Entry:
    """The entry for one change, with the actor, IP, user agent, request/task id and reason
    of the current ``payflow.platform.context``. Refuses (``MissingActor``) a change with no
    actor. ``prev_hash``: the object's latest entry (its row's ``audit_hash``), the genesis
    hash for an insert, or None to chain at commit (objects without an ``audit_hash``).
    Personal data is sealed under its subject's key (``payflow.platform.personal``)."""
    who = context.current()
    if not who.has_actor:
        raise MissingActor(f"{event_type} on {object_type} {object_id} has no actor")
    now = datetime.datetime.now(datetime.UTC)
    fields = {
        "action": action,
        "actor": {
            "id": who.actor_id[:64],
            "label": who.actor_label[:200],
            "type": who.actor_type[:16],
        },
        "created_at": now,
        "event_type": event_type,
        "ip": who.ip[:45],
        "new": None if new_values is None else _value(new_values),
        "object_id": object_id,
        "object_type": object_type,
        "old": None if old_values is None else _value(old_values),
        "reason": who.reason[:500],
        "request_id": who.request_id[:64],
        "task_id": who.task_id[:64],
        "user_agent": who.user_agent[:300],
    }
    body = encode_body(personal.seal_entry(fields, reason_subject=who.reason_subject or None))
    return Entry(
        object_type=object_type,
        object_id=object_id,
        action=action,
        event_type=event_type,
        actor_type=who.actor_type[:16],
        actor_id=who.actor_id[:64],
        request_id=who.request_id[:64],
        created_at=now,
        body=body,
        prev_hash=prev_hash,
        hash=None if prev_hash is None else entry_hash(prev_hash, body),
    )


_writer: Callable[[list[Entry]], None] | None = None


def set_writer(writer: Callable[[list[Entry]], None]) -> None:
    """Install the function that inserts a transaction's entries (the audit app's)."""
    global _writer
    _writer = writer


def stage(entry: Entry, *, using: str | None = None) -> None:
    """Queue ``entry`` for its transaction's multi-row insert, just before COMMIT."""
    db.before_commit(_write, entry, using=using)


def _write(entries: list[Entry]) -> None:
    if _writer is None:
        raise RuntimeError("no audit writer installed (is the audit app in INSTALLED_APPS?)")
    _writer(entries)
