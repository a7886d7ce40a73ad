"""Recording audit entries: in the change's transaction, chained per object, one INSERT.

Ledger changes compute their entry where they write the row (``ledger.signals``: the
row's ``audit_hash`` names its latest entry). Everything else — operator actions, failed
logins, the audit app's own purges and holds — calls ``audit_record``; those objects have
no ``audit_hash`` column, so their entries are chained at commit to the object's latest
entry (``_chain_to_tips``). ``write_entries`` inserts a transaction's entries in one
multi-row ``INSERT`` just before COMMIT; the unique (object, prev_hash) refuses a fork of
any object's chain, whatever wrote it. The sequencer appends committed entries to the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef, Q

from audit.actions import Action
from audit.models import AuditEntry
from payflow.platform import trail
from payflow.platform.trail import MissingActor

__all__ = ["MissingActor", "audit_record", "latest_hashes", "write_entries"]


def audit_record(
    *,
    object_type: str,
    object_id: str,
    action: str,
    event_type: str,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any] | None,
) -> None:
    """Record one change of an object that has no ``audit_hash`` column. Must run inside
    the change's transaction (``payflow.platform.db.atomic``); the entry is inserted just
    before COMMIT with every other entry of it.

    Takes the actor, IP, user agent, request/task id and reason from
    ``payflow.platform.context`` now; refuses with ``MissingActor`` when no actor is named,
    and with ``audit.actions.UnknownAction`` for an action that is not an ``Action``: either
    aborts the change.
    """
    Action.checked(action)
    trail.stage(
        trail.prepare(
            object_type=object_type,
            object_id=object_id,
            prev_hash=None,
            action=action,
            event_type=event_type,
            old_values=old_values,
            new_values=new_values,
        )
    )


def latest_hashes(objects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The hash of each object's latest entry (the one no entry of the object follows),
    for objects that have entries. Live entries only: an object whose entries were all
    archived starts a new chain after them (verification accepts that link at a segment)."""
    wanted = set(objects)
    if not wanted:
        return {}
    condition = Q()
    for object_type, object_id in wanted:
        condition |= Q(object_type=object_type, object_id=object_id)
    followed = AuditEntry.objects.filter(
        object_type=OuterRef("object_type"),
        object_id=OuterRef("object_id"),
        prev_hash=OuterRef("hash"),
    )
    rows = (
        AuditEntry.objects.filter(condition)
        .exclude(Exists(followed))
        .values_list("object_type", "object_id", "hash")
    )
    return {(object_type, object_id): digest for object_type, object_id, digest in rows}


def _chain_to_tips(entries: list[trail.Entry]) -> None:
    tips = latest_hashes(
        (entry.object_type, entry.object_id) for entry in entries if entry.prev_hash is None
    )
    # Entries staged with a hash already (ledger rows) may share an object with ones that
    # are not: the later follows the earlier, in the order they were recorded.
    for entry in entries:
        key = (entry.object_type, entry.object_id)
        if entry.prev_hash is None:
            entry.prev_hash = tips.get(key, trail.GENESIS_HASH)
            entry.hash = trail.entry_hash(entry.prev_hash, entry.body)
        tips[key] = entry.hash  # type: ignore[assignment]


def write_entries(entries: list[trail.Entry]) -> None:
    """Insert one transaction's entries (the writer ``payflow.platform.trail`` calls just
    before COMMIT): one multi-row ``INSERT``, in the order they were recorded."""
    if any(entry.prev_hash is None for entry in entries):
        _chain_to_tips(entries)
    AuditEntry.objects.bulk_create(
        [
            AuditEntry(
                prev_hash=entry.prev_hash or "",
                hash=entry.hash or "",
                encoding_version=trail.ENCODING_VERSION,
                body=entry.body,
                object_type=entry.object_type,
                object_id=entry.object_id,
                action=entry.action,
                event_type=entry.event_type,
                actor_type=entry.actor_type,
                actor_id=entry.actor_id,
                request_id=entry.request_id,
                created_at=entry.created_at,
            )
            for entry in entries
        ]
    )
