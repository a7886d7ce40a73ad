"""Recording audit rows: one per change, chained, inside the change's transaction."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from audit.actions import Action
from audit.chain import ENCODING_VERSION, canonical_bytes, entry_hash, lane_for
from audit.models import AuditEntry, LaneHead
from audit.signals import audit_recorded
from payflow.platform import context, db


class MissingActor(RuntimeError):
    """A change with nobody named as its actor: refused (PCI-DSS 10.2: who did it)."""


def _locked_heads(lanes: list[int]) -> dict[int, LaneHead]:
    # The lane heads are the chain's only shared state, and the last rows a transaction
    # locks (payflow.platform.db's lock order): one SELECT … FOR UPDATE in ascending lane order,
    # so two transactions that write to the same lanes queue instead of deadlocking. On
    # Galera a writer on another node that advanced the same head fails certification at
    # COMMIT (1213) and payflow.platform.db.atomic runs its whole transaction again, so the chain
    # never forks.
    heads = {
        head.lane: head
        for head in LaneHead.objects.select_for_update().filter(lane__in=lanes).order_by("lane")
    }
    for lane in lanes:
        if lane not in heads:  # a lane added after install (AUDIT_LANES raised)
            LaneHead.objects.get_or_create(lane=lane)
            heads[lane] = LaneHead.objects.select_for_update().get(lane=lane)
    return heads


def audit_record(
    *,
    object_type: str,
    object_id: str,
    action: str,
    event_type: str,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any] | None,
) -> None:
    """Record one change in the object's lane. Must run inside the change's transaction
    (``payflow.platform.db.atomic``): the row is written at the end of that transaction, with
    every other audit row of it, just before COMMIT (``_write_entries``).

    Takes the actor, IP, user agent, request/task id and reason from ``payflow.platform.context``
    now; refuses with ``MissingActor`` when no actor is named, and with
    ``audit.actions.UnknownAction`` for an action that is not an ``Action``: either aborts
    the change.
    """
    Action.checked(action)
    who = context.current()
    if not who.has_actor:
        raise MissingActor(f"{event_type} on {object_type} {object_id} has no actor")
    fields = {
        "action": action,
        "actor_id": who.actor_id[:64],
        "actor_label": who.actor_label[:200],
        "actor_type": who.actor_type[:16],
        "created_at": timezone.now(),
        "event_type": event_type,
        "ip": who.ip,
        "lane": lane_for(object_type, object_id),
        "new_values": new_values,
        "object_id": object_id,
        "object_type": object_type,
        "old_values": old_values,
        "reason": who.reason[:500],
        "request_id": who.request_id[:64],
        "task_id": who.task_id[:64],
        "user_agent": who.user_agent[:300],
    }
    db.before_commit(_write_entries, fields)


def _write_entries(pending: list[dict[str, Any]]) -> None:
    """Chain and insert a transaction's audit rows (in the order they were recorded within
    each lane), advance the lane heads, then signal each row (``audit_recorded``)."""
    heads = _locked_heads(sorted({fields["lane"] for fields in pending}))
    entries = []
    for fields in pending:
        head = heads[fields["lane"]]
        fields["seq"] = head.seq + 1
        digest = entry_hash(head.hash, canonical_bytes(fields))
        entries.append(
            AuditEntry(
                prev_hash=head.hash, hash=digest, encoding_version=ENCODING_VERSION, **fields
            )
        )
        head.seq, head.hash = fields["seq"], digest
    AuditEntry.objects.bulk_create(entries)
    for lane in sorted(heads):
        LaneHead.objects.filter(lane=lane).update(seq=heads[lane].seq, hash=heads[lane].hash)
    for entry in entries:
        audit_recorded.send(sender=AuditEntry, entry=entry)
