"""An object's history on its admin page: its audit rows and its outbox events."""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html, format_html_join

from audit import timeline
from audit.models import AuditEntry
from audit.objects import history_types
from outbox.models import OutboxEvent

HISTORY_LIMIT = 200


def _changes(entry: AuditEntry, fields: dict[str, Any]) -> str:
    """What the entry changed, field by field, money in major units (``audit.timeline``)."""
    if entry.action == "insert":
        return "created"
    old = {key: value for key, value in (fields["old"] or {}).items() if key != "version"}
    new = {key: value for key, value in (fields["new"] or {}).items() if key != "version"}
    return timeline.describe(old, new) or "—"


def audit_history(object_type: str, object_id: Any) -> str:
    """The object's audit entries and the operators' actions on it, oldest first: when,
    what, who (and how), why."""
    rows = [
        (row, row.revealed)
        for row in AuditEntry.objects.filter(
            object_type__in=history_types(object_type), object_id=str(object_id)
        ).order_by("id")[:HISTORY_LIMIT]
    ]
    body = format_html_join(
        "",
        "<tr class='audit-row'><td>{}</td><td>{}</td><td class='actor'>{} ({})</td>"
        "<td class='reason'>{}</td><td>{}</td><td><code>{}…</code></td></tr>",
        (
            (
                row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                row.event_type,
                fields["actor"]["label"] or row.actor_id,
                row.actor_type,
                fields["reason"] or "—",
                _changes(row, fields),
                row.hash[:12],
            )
            for row, fields in rows
        ),
    )
    if not body:
        return "No audit rows (archived, or none yet)."
    return format_html(
        "<table id='audit-history'><thead><tr><th>when (UTC)</th><th>event</th><th>actor</th>"
        "<th>reason</th><th>changes</th><th>hash</th></tr></thead><tbody>{}</tbody></table>",
        body,
    )


def outbox_history(aggregate_id: Any) -> str:
    """The outbox events of an aggregate, in sequence order, with their delivery state."""
    events = OutboxEvent.objects.filter(aggregate_id=str(aggregate_id)).order_by("sequence", "id")[
        :HISTORY_LIMIT
    ]
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                event.sequence,
                event.event_type,
                event.topic,
                event.status,
                event.attempts,
                event.published_at.strftime("%Y-%m-%d %H:%M:%S") if event.published_at else "—",
            )
            for event in events
        ),
    )
    if not body:
        return "No outbox events."
    return format_html(
        "<table id='outbox-history'><thead><tr><th>seq</th><th>event</th><th>topic</th>"
        "<th>status</th><th>attempts</th><th>published (UTC)</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        body,
    )
