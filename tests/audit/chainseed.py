"""Seeding many chained audit rows quickly, as the recorder would have written them.

``audit_record`` writes one row per ledger change, with its locks and outbox mirror; a
test that needs 100,000 rows spread over two years writes them here instead: the same
canonical encoding and hash, continuing each lane's head, in bulk INSERTs. The rows are
real chain rows (verification cannot tell them apart); only the clock is chosen.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import connection, transaction

from audit.chain import canonical_bytes, entry_hash
from audit.models import LaneHead

COLUMNS = (
    "lane, seq, prev_hash, hash, encoding_version, object_type, object_id, action, event_type, "
    "old_values, new_values, actor_type, actor_id, actor_label, ip, user_agent, request_id, "
    "task_id, reason, created_at"
)


def seed_chain(
    total: int,
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    lanes: list[int] | None = None,
    merchant: str = "seed-merchant",
    object_type: str = "ledger.transaction",
) -> int:
    """Append ``total`` rows, round-robin over ``lanes`` (default all), with created_at
    rising evenly from ``start`` to ``end``. Returns the number written."""
    import json

    lanes = lanes if lanes is not None else list(range(settings.AUDIT_LANES))
    heads = {}
    for lane in lanes:
        head, _ = LaneHead.objects.get_or_create(lane=lane)
        heads[lane] = (head.seq, head.hash)
    step = (end - start) / max(total - 1, 1)
    batch: list[tuple] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for index in range(total):
            lane = lanes[index % len(lanes)]
            seq, prev = heads[lane]
            seq += 1
            fields = {
                "action": "update",
                "actor_id": "seed",
                "actor_label": "seed",
                "actor_type": "system",
                "created_at": start + step * index,
                "event_type": "payment.captured",
                "ip": "",
                "lane": lane,
                "new_values": {"merchant": merchant, "amount": 1000 + index, "status": "captured"},
                "object_id": f"seed-{lane}-{seq}",
                "object_type": object_type,
                "old_values": {"status": "authorized"},
                "reason": "",
                "request_id": "",
                "seq": seq,
                "task_id": "",
                "user_agent": "",
            }
            digest = entry_hash(prev, canonical_bytes(fields))
            heads[lane] = (seq, digest)
            batch.append(
                (
                    lane,
                    seq,
                    prev,
                    digest,
                    1,
                    fields["object_type"],
                    fields["object_id"],
                    fields["action"],
                    fields["event_type"],
                    json.dumps(fields["old_values"]),
                    json.dumps(fields["new_values"]),
                    "system",
                    "seed",
                    "seed",
                    "",
                    "",
                    "",
                    "",
                    "",
                    fields["created_at"].replace(tzinfo=None),
                )
            )
            if len(batch) >= 5000:
                _insert(cursor, batch)
        _insert(cursor, batch)
        for lane, (seq, digest) in heads.items():
            cursor.execute(
                "UPDATE audit_lanehead SET seq = %s, hash = %s WHERE lane = %s", [seq, digest, lane]
            )
    return total


def _insert(cursor, batch: list[tuple]) -> None:
    if batch:
        marks = ", ".join(["%s"] * 20)
        sql = f"INSERT INTO audit_auditentry ({COLUMNS}) VALUES ({marks})"  # noqa: S608 - constants
        cursor.executemany(sql, batch)
        batch.clear()
