"""Recording audit rows: one per change, chained, inside the change's transaction."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from audit.chain import ENCODING_VERSION, canonical_bytes, entry_hash, lane_for
from audit.models import AuditEntry, LaneHead
from audit.signals import audit_recorded
from payflow import context


class MissingActor(RuntimeError):
    """A change with nobody named as its actor: refused (PCI-DSS 10.2: who did it)."""


def _locked_head(lane: int) -> LaneHead:
    # The lane head is the chain's only shared state. SELECT … FOR UPDATE serializes
    # writers of one lane on one node; on Galera a writer on another node that advanced
    # the same head fails certification at COMMIT (1213) and payflow.db.atomic runs its
    # whole transaction again, so the chain never forks.
    head = LaneHead.objects.select_for_update().filter(lane=lane).first()
    if head is None:  # a lane added after install (AUDIT_LANES raised)
        LaneHead.objects.get_or_create(lane=lane)
        head = LaneHead.objects.select_for_update().get(lane=lane)
    return head


def audit_record(
    *,
    object_type: str,
    object_id: str,
    action: str,
    event_type: str,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any] | None,
) -> AuditEntry:
    """Append one row to the object's lane. Must run inside the change's transaction.

    Takes the actor, IP, user agent, request/task id and reason from ``payflow.context``;
    refuses with ``MissingActor`` when no actor is named, which aborts the change.
    """
    who = context.current()
    if not who.has_actor:
        raise MissingActor(f"{event_type} on {object_type} {object_id} has no actor")
    lane = lane_for(object_type, object_id)
    head = _locked_head(lane)
    fields = {
        "action": action,
        "actor_id": who.actor_id[:64],
        "actor_label": who.actor_label[:200],
        "actor_type": who.actor_type[:16],
        "created_at": timezone.now(),
        "event_type": event_type,
        "ip": who.ip,
        "lane": lane,
        "new_values": new_values,
        "object_id": object_id,
        "object_type": object_type,
        "old_values": old_values,
        "reason": who.reason[:500],
        "request_id": who.request_id[:64],
        "seq": head.seq + 1,
        "task_id": who.task_id[:64],
        "user_agent": who.user_agent[:300],
    }
    digest = entry_hash(head.hash, canonical_bytes(fields))
    entry = AuditEntry.objects.create(
        prev_hash=head.hash, hash=digest, encoding_version=ENCODING_VERSION, **fields
    )
    LaneHead.objects.filter(lane=lane).update(seq=entry.seq, hash=digest)
    audit_recorded.send(sender=AuditEntry, entry=entry)
    return entry
