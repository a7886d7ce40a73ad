"""Write an outbox row for every transaction change, inside the change's transaction."""

from __future__ import annotations

import logging
from typing import Any

from ledger.events import EventType
from ledger.models import Transaction
from outbox import events
from outbox.models import OutboxEvent
from outbox.tasks import relay_partitions
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
    event = OutboxEvent.objects.create(
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
    _nudge_after_commit(event.relay_partition)


def _nudge_after_commit(partition: int) -> None:
    """A nudge after commit gets the events out quickly; if it is lost, beat's sweep (every
    second) publishes them anyway. One nudge per transaction (a payment writes several
    events): ``payflow.platform.db.after_commit`` collects the partitions; nothing is sent
    if the transaction rolls back."""
    db.after_commit(_nudge_partitions, partition)


def _nudge_partitions(partitions: list[int]) -> None:
    # One broker message naming them all (a message per partition cost a round trip each).
    nudge(sorted(set(partitions)))


def nudge(partitions: list[int]) -> None:
    try:
        relay_partitions.apply_async(args=[partitions], ignore_result=True)
    except Exception as exc:  # the broker being down must never fail the committed request
        logger.warning("outbox nudge for partitions %s not sent: %s", partitions, exc)
