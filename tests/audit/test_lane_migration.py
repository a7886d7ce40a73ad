"""Migration audit 0008 on MariaDB: a database with a lane-based trail (rows, lane heads, a
signed lane checkpoint) comes out with the same history as entries of the log, every
audited row naming its latest entry, everything sequenced, and a closing entry that ties
the old evidence to the new log; then it verifies and reconciles (issue 15, item 11)."""

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditEntry, LogLeaf
from audit.verify import verify_log
from ledger.models import Merchant, Transaction
from ledger.services.refunds import refund_create
from payflow.platform import trail
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)

LANE_ERA = [
    ("audit", "0007_checkpoint_triggers"),
    ("ledger", "0004_livemode"),
    ("payflow", "0006_livemode"),
]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_a_lane_trail_is_moved_into_the_log_and_verifies(merchant):
    payment = pay(merchant, amount=4200)
    refund_create(payment=payment, amount=200)
    # What the lane trail held for these objects: the same facts, as lane rows.
    history = [entry.fields | {"id": entry.id} for entry in AuditEntry.objects.order_by("id")]
    migrate(LANE_ERA)
    try:
        lanes = {}
        with connection.cursor() as cursor:
            for number, fields in enumerate(history, start=1):
                lane = number % 3
                seq, prev = lanes.get(lane, (0, "0" * 64))
                digest = f"{number:064x}"  # the lane era's own hashes: kept as history
                cursor.execute(
                    "INSERT INTO audit_auditentry (lane, seq, prev_hash, hash, encoding_version,"
                    " object_type, object_id, action, event_type, old_values, new_values,"
                    " actor_type, actor_id, actor_label, ip, user_agent, request_id, task_id,"
                    " reason, created_at) VALUES (%s, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s,"
                    " %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        lane,
                        seq + 1,
                        prev,
                        digest,
                        fields["object_type"],
                        fields["object_id"],
                        fields["action"],
                        fields["event_type"],
                        None if fields["old"] is None else json.dumps(fields["old"]),
                        json.dumps(fields["new"]),
                        fields["actor"]["type"],
                        fields["actor"]["id"],
                        fields["actor"]["label"],
                        fields["ip"],
                        fields["user_agent"],
                        fields["request_id"],
                        fields["task_id"],
                        fields["reason"],
                        fields["created_at"].replace("T", " ").replace("+00:00", ""),
                    ],
                )
                lanes[lane] = (seq + 1, digest)
            for lane, (seq, digest) in lanes.items():
                cursor.execute(
                    "INSERT INTO audit_lanehead (lane, seq, hash) VALUES (%s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE seq = VALUES(seq), hash = VALUES(hash)",
                    [lane, seq, digest],
                )
            cursor.execute(
                "INSERT INTO audit_auditcheckpoint (number, created_at, key_id, digest, signed,"
                " tree_size) VALUES (1, NOW(6), 'audit-1', %s, %s, %s)",
                ["c" * 64, json.dumps({"body": {"number": 1}, "signature": "00"}), len(history)],
            )
    finally:
        migrate(latest())

    entries = list(AuditEntry.objects.order_by("id"))
    assert len(entries) == len(history) + 1
    migrated, closing = entries[:-1], entries[-1]
    # the same facts, in the same order, as version-2 entries chained per object
    for old, new in zip(history, migrated, strict=True):
        fields = new.fields
        for key in ("object_type", "object_id", "event_type", "action", "new", "old", "actor"):
            assert fields[key] == old[key], key
    tips = {}
    for entry in migrated:
        key = (entry.object_type, entry.object_id)
        assert entry.prev_hash == tips.get(key, trail.GENESIS_HASH)
        assert trail.entry_hash(entry.prev_hash, bytes(entry.body)) == entry.hash
        tips[key] = entry.hash
    assert (
        Merchant.objects.get(pk=merchant.pk).audit_hash
        == tips[("ledger.merchant", str(merchant.pk))]
    )
    assert (
        Transaction.objects.get(pk=payment.pk).audit_hash
        == tips[("ledger.transaction", str(payment.pk))]
    )
    # the closing entry ties the lane evidence to the log
    summary = closing.fields["new"]
    assert closing.event_type == "audit.lanes_migrated"
    assert summary["entries"] == str(len(history))
    assert {row["lane"]: row["hash"] for row in summary["lanes"] if row["seq"] != "0"} == {
        str(lane): digest for lane, (_, digest) in lanes.items()
    }
    assert summary["last_lane_checkpoint"]["digest"] == "c" * 64
    # everything is in the tree; the sequencer seals it and the whole thing verifies
    assert list(LogLeaf.objects.order_by("index").values_list("entry_id", flat=True)) == [
        entry.id for entry in entries
    ]
    sequence()
    report = verify_log()
    assert report.ok, [b.as_dict() for b in report.breaks]
    assert report.entries == len(entries)


def test_lane_rows_only_in_segment_files_stop_the_migration_before_it_changes_anything(db):
    migrate(LANE_ERA)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO audit_archivesegment (lane, first_seq, last_seq, first_prev_hash,"
                " last_hash, row_count, file_digest, file_size, storage_path, format_version,"
                " created_at, verified_at, rows_deleted_at, check_detail) VALUES (3, 1, 10,"
                " %s, %s, 10, %s, 100, 'lane-003/x.jsonl.gz', 1, NOW(6), NOW(6), NOW(6), '')",
                ["0" * 64, "a" * 64, "b" * 64],
            )
        with pytest.raises(RuntimeError, match="in archive segment files"):
            migrate(latest())
        with connection.cursor() as cursor:  # nothing changed: the lane tables are intact
            cursor.execute("SELECT COUNT(*) FROM audit_lanehead")
            cursor.execute("DELETE FROM audit_archivesegment")
    finally:
        migrate(latest())
    assert AuditEntry.objects.count() == 0
