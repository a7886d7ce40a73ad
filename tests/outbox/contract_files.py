"""The parts of the published contract written from the registries.

``ledger.events.EventType`` (event types, topics, payload schemas) and ``audit.actions``
(audit actions, the audit's own event types) are the lists; this module renders what
``outbox/schemas/*.json`` and ``docs/events.md`` must say about them:

- ``audit_entry.json``: the ``action`` enum is ``Action``;
- ``envelope.json``: the ``aggregate.type`` enum is the aggregates of published event types;
- ``docs/events.md``: the tables between ``<!-- registry:NAME -->`` and
  ``<!-- /registry:NAME -->``.

``tests/outbox/test_registries.py`` fails when a file differs from what is rendered here;
``python -m tests.outbox.contract_files`` writes them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from audit.actions import AUDIT_EVENTS, Action
from ledger.events import EventType, Topic

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "outbox" / "schemas"
EVENTS_DOC = ROOT / "docs" / "events.md"
TRANSACTION_TOPICS = (
    Topic.TRANSACTIONS_INITIATED,
    Topic.TRANSACTIONS_COMPLETED,
    Topic.TRANSACTIONS_FAILED,
)


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def _dumped(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def published_aggregates() -> list[str]:
    return list(dict.fromkeys(event.aggregate for event in EventType if event.topic))


def rendered_schemas() -> dict[Path, str]:
    audit_entry = _schema("audit_entry.json")
    entry = audit_entry["properties"]["entry"]["properties"]
    entry["action"]["enum"] = [action.value for action in Action]
    envelope = _schema("envelope.json")
    envelope["properties"]["aggregate"]["properties"]["type"]["enum"] = [
        aggregate for aggregate in published_aggregates() if aggregate != "audit_log"
    ]
    return {
        SCHEMAS / "audit_entry.json": _dumped(audit_entry),
        SCHEMAS / "envelope.json": _dumped(envelope),
    }


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _schema_link(event: EventType) -> str:
    if event.schema is None:
        return "the signed note (text)"
    return f"[{event.schema}](../outbox/schemas/{event.schema})"


def tables() -> dict[str, str]:
    transaction_events = [event for event in EventType if event.topic in TRANSACTION_TOPICS]
    audit_topic_events = [
        event for event in EventType if event.topic and event.topic not in TRANSACTION_TOPICS
    ]
    audit_only = [event for event in EventType if event.topic is None]
    return {
        "transaction-events": _table(
            ("type", "topic", "when"),
            [
                (f"`{event}`", event.topic.removeprefix("transactions."), event.when)
                for event in transaction_events
            ],
        ),
        "audit-topics": _table(
            ("type", "topic", "payload", "when"),
            [
                (f"`{event}`", str(event.topic), _schema_link(event), event.when)
                for event in audit_topic_events
            ],
        ),
        "audit-actions": _table(
            ("action", "when"),
            [(f"`{action.value}`", action.label) for action in Action],
        ),
        "audit-only-events": _table(
            ("type", "aggregate", "when"),
            [(f"`{event}`", event.aggregate, event.when) for event in audit_only],
        ),
        "audit-own-events": _table(
            ("type", "action", "when"),
            [
                (f"`{event.event_type}`", f"`{event.action.value}`", event.when)
                for event in AUDIT_EVENTS.values()
            ],
        ),
    }


def rendered_doc(text: str) -> str:
    """``text`` (docs/events.md) with every registry table replaced by its rendering."""
    for name, table in tables().items():
        pattern = re.compile(
            rf"(<!-- registry:{name} -->\n)(?:.*?\n)?(<!-- /registry:{name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"docs/events.md has no <!-- registry:{name} --> block")
        text = pattern.sub(lambda match, table=table: f"{match[1]}{table}\n{match[2]}", text)
    return text


def rendered() -> dict[Path, str]:
    """Every generated file: its path and the text it must have."""
    return {**rendered_schemas(), EVENTS_DOC: rendered_doc(EVENTS_DOC.read_text())}


def main() -> int:
    for path, text in rendered().items():
        if path.read_text() != text:
            path.write_text(text)
            sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
