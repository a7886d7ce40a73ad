"""Seeding many audit entries quickly, as the recorder would have written them.

A test that needs 100,000 entries spread over two years writes them here instead of through
the services: the same canonical bytes and hashes, chained per object, in bulk INSERTs, then
sequenced into the log like any other entries (``tests.audit.conftest.sequence``). They are
real entries (verification cannot tell them apart); only the clock is chosen.
"""

from __future__ import annotations

import datetime

from django.db import transaction

from audit.models import AuditEntry
from payflow.platform import trail


def seed_chain(
    total: int,
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    objects: int = 16,
    merchant: str = "seed-merchant",
    object_type: str = "audit.seed",
) -> int:
    """Append ``total`` entries, round-robin over ``objects`` objects (each its own chain),
    with created_at rising evenly from ``start`` to ``end``. Returns the number written."""
    from audit.services import latest_hashes

    keys = [(object_type, f"seed-{number}") for number in range(objects)]
    tips = latest_hashes(keys)
    step = (end - start) / max(total - 1, 1)
    batch: list[AuditEntry] = []
    with transaction.atomic():
        for index in range(total):
            key = keys[index % len(keys)]
            prev = tips.get(key, trail.GENESIS_HASH)
            created = start + step * index
            body = trail.encode_body(
                {
                    "action": "update",
                    "actor": {"id": "seed", "label": "seed", "type": "system"},
                    "created_at": created,
                    "event_type": "payment.captured",
                    "ip": "",
                    "new": {"merchant": merchant, "amount": 1000 + index, "status": "captured"},
                    "object_id": key[1],
                    "object_type": key[0],
                    "old": {"merchant": merchant, "amount": 1000 + index, "status": "authorized"},
                    "reason": "",
                    "request_id": "",
                    "task_id": "",
                    "user_agent": "",
                }
            )
            digest = trail.entry_hash(prev, body)
            tips[key] = digest
            batch.append(
                AuditEntry(
                    prev_hash=prev,
                    hash=digest,
                    body=body,
                    object_type=key[0],
                    object_id=key[1],
                    action="update",
                    event_type="payment.captured",
                    actor_type="system",
                    actor_id="seed",
                    created_at=created,
                )
            )
            if len(batch) >= 5000:
                AuditEntry.objects.bulk_create(batch)
                batch = []
        AuditEntry.objects.bulk_create(batch)
    return total
