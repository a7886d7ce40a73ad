"""Every row a money operation can touch, and the exact difference between two moments.

``snapshot()`` reads every row of the tables a ledger service may write (transactions,
journal entries and lines, accounts, acquirer commands and the simulator's book, card
tokens, merchants and API keys, audit entries, outbox events, Idempotency-Key records),
every column.
``changes(before, after)`` names what was added, removed or changed, per table; a refused
operation must show none. Use it in a *transactional* test (``django_db(transaction=
True)``): there ``payflow.platform.db.atomic`` is a real transaction with its retry, a refusal is a
real ROLLBACK and ``on_commit`` callbacks run, which a test inside one transaction (where
``atomic`` is a savepoint) never shows.
"""

from __future__ import annotations

from typing import Any

from audit.models import AuditEntry
from ledger.models import (
    Account,
    AcquirerCommand,
    ApiKey,
    CardToken,
    JournalEntry,
    JournalLine,
    Merchant,
    SimulatedOperation,
    Transaction,
)
from outbox.models import OutboxEvent
from payflow.models import IdempotencyRecord

MODELS = (
    Merchant,
    ApiKey,
    Transaction,
    JournalEntry,
    JournalLine,
    Account,
    AcquirerCommand,
    SimulatedOperation,
    CardToken,
    AuditEntry,
    OutboxEvent,
    IdempotencyRecord,
)

Snapshot = dict[str, dict[Any, tuple]]

#: Columns written by someone else than the operation under test: the relay (the session's
#: real Celery worker may publish earlier events while a test runs) marks events
#: published. An operation adding, removing or rewriting an event is still seen.
NOT_THE_OPERATIONS = {
    "OutboxEvent": {
        "status", "attempts", "next_attempt_at", "last_error", "published_at",
        "kafka_partition", "kafka_offset",
    },
}  # fmt: skip


def snapshot() -> Snapshot:
    taken: Snapshot = {}
    for model in MODELS:
        ignored = NOT_THE_OPERATIONS.get(model.__name__, set())
        names = [
            field.attname for field in model._meta.concrete_fields if field.attname not in ignored
        ]
        taken[model.__name__] = {
            row[0]: row for row in model.objects.order_by().values_list("pk", *names)
        }
    return taken


def changes(before: Snapshot, after: Snapshot) -> dict[str, dict[str, int]]:
    """Per table with any difference: how many rows were added, removed and changed."""
    found = {}
    for table, old in before.items():
        new = after[table]
        diff = {
            "added": len(new.keys() - old.keys()),
            "removed": len(old.keys() - new.keys()),
            "changed": sum(1 for pk in old.keys() & new.keys() if old[pk] != new[pk]),
        }
        if any(diff.values()):
            found[table] = {kind: count for kind, count in diff.items() if count}
    return found
