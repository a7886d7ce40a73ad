"""The event contract: which ledger changes become events, on which topic, in what envelope.

The event types and their topics are listed once, in ``ledger.events`` (``EventType``,
``Topic``); docs/events.md and the JSON schemas in outbox/schemas/ are checked against that
list (``tests/outbox/test_registries.py``).
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from django.conf import settings

from ledger.events import Topic
from ledger.models import Transaction
from payflow.platform import kafka

SCHEMA_VERSION = 1
TOPIC_INITIATED = Topic.TRANSACTIONS_INITIATED
TOPIC_COMPLETED = Topic.TRANSACTIONS_COMPLETED
TOPIC_FAILED = Topic.TRANSACTIONS_FAILED
TOPIC_AUDIT_EVENTS = Topic.AUDIT_EVENTS
TOPIC_AUDIT_CHECKPOINTS = Topic.AUDIT_CHECKPOINTS
ALL_TOPICS = list(Topic)

#: Transaction fields an event carries: its whole audited snapshot (never card data: the
#: token is its id), so that the merchant's event can show the object exactly as the API
#: does (``payflow.api.events``). ``reason`` is sealed like ``metadata``.
PAYLOAD_FIELDS = Transaction.audit_fields
FAILED_STATUSES = {"failed", "cancelled"}


def topic_for(
    action: str, new_values: dict[str, Any], old_values: dict[str, Any] | None = None
) -> Topic:
    """Inserts go to ``transactions.initiated``; failures and cancellations (a change into
    ``failed`` or ``cancelled``) to ``transactions.failed``; every other change (a capture,
    a refund, a metadata update, even of a failed payment) to ``transactions.completed``.

    Decided from the change, not looked up by event type, so a change the registry does not
    list is still published; ``tests/outbox/test_registries.py`` checks that every listed
    ``EventType.topic`` is what this gives for it."""
    if action == "insert":
        return TOPIC_INITIATED
    status = new_values.get("status")
    if status in FAILED_STATUSES and (old_values or {}).get("status") != status:
        return TOPIC_FAILED
    return TOPIC_COMPLETED


def relay_partition(aggregate_id: str) -> int:
    """Stable across processes and restarts (unlike ``hash()``)."""
    return zlib.crc32(aggregate_id.encode()) % settings.OUTBOX_RELAY_PARTITIONS


def _envelope_head(event) -> dict[str, Any]:
    return {
        "event_id": str(event.id),
        "type": event.event_type,
        "schema_version": event.schema_version,
        "aggregate": {"type": event.aggregate_type, "id": event.aggregate_id},
        "sequence": event.sequence,
        "occurred_at": event.created_at.isoformat(timespec="microseconds"),
    }


def envelope(event) -> dict[str, Any]:
    """The JSON value published to Kafka (schema ``outbox/schemas/envelope.json``)."""
    return {**_envelope_head(event), "payload": event.payload}


def envelope_bytes(event) -> bytes:
    """``envelope(event)`` as the bytes the relay publishes, for an event read with its
    payload as the stored JSON text (``payload_json``): the payload is spliced in as
    stored, never decoded and encoded again (it is the envelope's last member). Parses to
    exactly ``envelope()`` of the same row (``tests/outbox/test_contract.py``)."""
    head = orjson.dumps(_envelope_head(event))[:-1]
    return head + b',"payload":' + event.payload_json.encode() + b"}"


def kafka_headers(event) -> list[tuple[str, str | bytes | None]]:
    """Headers repeat the id and type, so consumers can deduplicate without parsing."""
    return [
        ("event_id", str(event.id).encode()),
        ("event_type", event.event_type.encode()),
        ("schema_version", str(event.schema_version).encode()),
    ]


def full_topic(name: str) -> str:
    return kafka.topic(name)
