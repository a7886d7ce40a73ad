"""Write an outbox row for every transaction change, inside the change's transaction."""

from __future__ import annotations

import logging
from typing import Any

from ledger.events import EventType
from ledger.models import Transaction
from outbox import events
from outbox.models import OutboxEvent
from payflow.platform import db, personal

#: Transaction changes recorded in the audit trail only.
UNPUBLISHED = frozenset({EventType.TRANSACTION_PERSONAL_DATA_ERASED})

logger = logging.getLogger(__name__)


def record_transaction_event(
    sender: Any,
    instance: Any,
    action: str,
    event_type: str,
    new_values: dict,
    old_values: dict | None = None,
    **kwargs: Any,
) -> None:
    """Receiver of ``ledger_changed``: one outbox row per transaction insert or change.

    Runs inside the caller's transaction (a rollback leaves no row). Facts only: the
    payload is the transaction's snapshot restricted to ``events.PAYLOAD_FIELDS``, its
    personal data sealed for the cardholder (``payflow.platform.personal``), so that erasing
    the cardholder erases it from every copy of the event too. An erasure itself
    (``UNPUBLISHED``) is not published.
    """
    if sender is not Transaction or event_type in UNPUBLISHED:
        return
    aggregate_id = str(instance.pk)
    event = OutboxEvent(
        merchant_id=instance.merchant_id,
        livemode=instance.livemode,
        aggregate_type=instance.type,
        aggregate_id=aggregate_id,
        sequence=new_values["version"],
        event_type=event_type,
        schema_version=events.SCHEMA_VERSION,
        topic=events.full_topic(events.topic_for(action, new_values, old_values)),
        key=aggregate_id,
        payload=personal.seal_values(
            "ledger.transaction",
            aggregate_id,
            {name: new_values[name] for name in events.PAYLOAD_FIELDS if name in new_values},
        ),
        relay_partition=events.relay_partition(aggregate_id),
    )
    db.before_commit(_insert_events, event)


def _insert_events(staged: list[OutboxEvent]) -> None:
    """Every outbox row of the transaction in one multi-row INSERT, just before COMMIT
    (the relay process polls for them: no message is sent per transaction)."""
    OutboxEvent.objects.bulk_create(staged)
