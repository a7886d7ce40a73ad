"""The audit trail becomes one transparency log (DESIGN.md section 6, docs/audit-formats.md).

1. The lane triggers are dropped and the lane-era table is set aside.
2. The new tables: entries chained per object (canonical bytes stored), the log's leaves and
   perfect-subtree nodes, checkpoints, cosignatures, the Kafka publication mark.
3. **The lane data is moved into the log** (``move_lanes_into_log``): every existing entry,
   in id order, becomes a version-2 entry of its object's chain (its fields re-encoded,
   nothing dropped), every audited ledger row gets the hash of its latest entry, all of them
   are appended to the tree, and a last entry ``audit.lanes_migrated`` records what the lane
   trail ended with (every lane's head, the last lane checkpoint's digest and signature, the
   ranges of purged segments), so the old evidence stays tied to the new log. The sequencer
   signs the first checkpoint when it starts. Lane data still in archived segment files
   cannot be re-encoded here: the migration stops with a sentence if there is any.
4. The lane tables go; segments and purge records move to log index ranges.
5. New triggers: entries are never updated and are deleted only under a verified segment;
   leaves, nodes, checkpoints and cosignatures are never updated or deleted.
"""

import datetime
import importlib
import json

from django.db import migrations, models

import payflow.platform.trail

lanes = importlib.import_module("audit.migrations.0002_lanes_and_immutability_triggers")
signed_records = importlib.import_module("audit.migrations.0007_checkpoint_triggers")

ACTOR = "migration:audit.0008"
AUDITED = {
    "ledger.acquirercommand": "AcquirerCommand",
    "ledger.apikey": "ApiKey",
    "ledger.cardtoken": "CardToken",
    "ledger.journalentry": "JournalEntry",
    "ledger.merchant": "Merchant",
    "ledger.transaction": "Transaction",
    "ledger.vaultkey": "VaultKey",
}

IMMUTABLE = "audit log rows are immutable"
NOT_ARCHIVED = "audit entries can only be deleted once a verified archive segment covers them"
APPEND_ONLY = (
    "audit_logleaf",
    "audit_lognode",
    "audit_checkpoint",
    "audit_cosignature",
    "audit_retentionpurge",
)


def _mariadb_triggers():
    statements = [
        f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_auditentry FOR EACH ROW
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{IMMUTABLE}'""",
        f"""CREATE TRIGGER audit_entry_delete_only_archived BEFORE DELETE ON audit_auditentry
            FOR EACH ROW BEGIN
              IF NOT EXISTS (
                SELECT 1 FROM audit_logleaf l JOIN audit_archivesegment s
                  ON l.`index` BETWEEN s.first_index AND s.last_index
                WHERE l.entry_id = OLD.id AND s.verified_at IS NOT NULL
              ) THEN
                SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{NOT_ARCHIVED}';
              END IF;
            END""",
    ]
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            statements.append(
                f"""CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table}
                    FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{IMMUTABLE}'"""
            )
    return statements


def _sqlite_triggers():
    statements = [
        f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_auditentry
            BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END""",
        f"""CREATE TRIGGER audit_entry_delete_only_archived BEFORE DELETE ON audit_auditentry
            WHEN NOT EXISTS (
              SELECT 1 FROM audit_logleaf l JOIN audit_archivesegment s
                ON l."index" BETWEEN s.first_index AND s.last_index
              WHERE l.entry_id = OLD.id AND s.verified_at IS NOT NULL)
            BEGIN SELECT RAISE(ABORT, '{NOT_ARCHIVED}'); END""",
    ]
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            statements.append(
                f"""CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table}
                    BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"""
            )
    return statements


def trigger_names():
    names = ["audit_entry_no_update", "audit_entry_delete_only_archived"]
    names += [f"{table}_no_{event}" for table in APPEND_ONLY for event in ("update", "delete")]
    return names


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in {"mysql": _mariadb_triggers, "sqlite": _sqlite_triggers}[vendor]():
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    for name in trigger_names():
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


def refuse_archived_lane_rows(apps, schema_editor):
    """Before any change: lane rows that live only in segment files cannot be re-encoded
    here (their files are in the lane format), so the migration stops, changing nothing."""
    segment = apps.get_model("audit", "ArchiveSegment")
    archived = segment.objects.using(schema_editor.connection.alias).filter(
        rows_deleted_at__isnull=False, purged_at__isnull=True
    )
    if archived.exists():
        raise RuntimeError(
            "audit rows of the lane trail are in archive segment files "
            f"({archived.count()} segments): restore them to audit_auditentry (or let "
            "retention purge them) with the previous release before this migration"
        )


def move_lanes_into_log(apps, schema_editor):
    from audit import tlog

    alias = schema_editor.connection.alias
    legacy = apps.get_model("audit", "LegacyAuditEntry")
    segment = apps.get_model("audit", "ArchiveSegment")
    entry_model = apps.get_model("audit", "AuditEntry")
    tips = {}
    created = []
    count = 0
    batch = []
    for old in legacy.objects.using(alias).order_by("id").iterator(chunk_size=2000):
        key = (old.object_type, old.object_id)
        prev = tips.get(key, payflow.platform.trail.GENESIS_HASH)
        body = payflow.platform.trail.encode_body(
            {
                "action": old.action,
                "actor": {"id": old.actor_id, "label": old.actor_label, "type": old.actor_type},
                "created_at": old.created_at,
                "event_type": old.event_type,
                "ip": old.ip,
                "new": old.new_values,
                "object_id": old.object_id,
                "object_type": old.object_type,
                "old": old.old_values,
                "reason": old.reason,
                "request_id": old.request_id,
                "task_id": old.task_id,
                "user_agent": old.user_agent,
            }
        )
        digest = payflow.platform.trail.entry_hash(prev, body)
        tips[key] = digest
        batch.append(
            entry_model(
                prev_hash=prev,
                hash=digest,
                encoding_version=2,
                body=body,
                object_type=old.object_type,
                object_id=old.object_id,
                action=old.action,
                event_type=old.event_type,
                actor_type=old.actor_type,
                actor_id=old.actor_id,
                request_id=old.request_id,
                created_at=old.created_at,
            )
        )
        count += 1
        if len(batch) >= 2000:
            created += _insert(entry_model, alias, batch)
            batch = []
    if count:
        batch.append(_closing_entry(apps, alias, tips, count))
    created += _insert(entry_model, alias, batch)
    for label, model_name in AUDITED.items():
        model = apps.get_model("ledger", model_name)
        for (object_type, object_id), digest in tips.items():
            if object_type == label:
                model.objects.using(alias).filter(pk=object_id).update(audit_hash=digest)
    _append_to_tree(apps, alias, created, tlog)
    retention = apps.get_model("audit", "RetentionPurge")
    segment.objects.using(alias).all().delete()
    retention.objects.using(alias).all().delete()


def _insert(entry_model, alias, batch):
    if not batch:
        return []
    entry_model.objects.using(alias).bulk_create(batch)
    hashes = [entry.hash for entry in batch]
    ids = dict(
        entry_model.objects.using(alias).filter(hash__in=hashes).values_list("hash", "id")
    )
    return [(ids[digest], digest) for digest in hashes]


def _closing_entry(apps, alias, tips, count):
    lane_head = apps.get_model("audit", "LaneHead")
    checkpoint = apps.get_model("audit", "AuditCheckpoint")
    segment = apps.get_model("audit", "ArchiveSegment")
    last = checkpoint.objects.using(alias).order_by("-number").first()
    summary = {
        "entries": count,
        "lanes": [
            {"lane": head.lane, "seq": head.seq, "hash": head.hash}
            for head in lane_head.objects.using(alias).order_by("lane")
        ],
        "last_lane_checkpoint": None
        if last is None
        else {
            "number": last.number,
            "digest": last.digest,
            "signed": json.dumps(last.signed, sort_keys=True, separators=(",", ":")),
        },
        "purged_segments": [
            {"lane": s.lane, "first_seq": s.first_seq, "last_seq": s.last_seq,
             "file_digest": s.file_digest}
            for s in segment.objects.using(alias).filter(purged_at__isnull=False).order_by("id")
        ],
    }  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    fields = {
        "action": "migrate",
        "actor": {"id": ACTOR, "label": "audit migration 0008", "type": "system"},
        "created_at": now,
        "event_type": "audit.lanes_migrated",
        "ip": "",
        "new": summary,
        "object_id": "lanes",
        "object_type": "audit.log",
        "old": None,
        "reason": "the lane trail moved into the transparency log",
        "request_id": "",
        "task_id": "",
        "user_agent": "",
    }
    body = payflow.platform.trail.encode_body(fields)
    entry_model = apps.get_model("audit", "AuditEntry")
    prev = payflow.platform.trail.GENESIS_HASH
    return entry_model(
        prev_hash=prev,
        hash=payflow.platform.trail.entry_hash(prev, body),
        encoding_version=2,
        body=body,
        object_type="audit.log",
        object_id="lanes",
        action="migrate",
        event_type="audit.lanes_migrated",
        actor_type="system",
        actor_id=ACTOR,
        request_id="",
        created_at=now,
    )


def _append_to_tree(apps, alias, created, tlog):
    if not created:
        return
    leaf = apps.get_model("audit", "LogLeaf")
    node = apps.get_model("audit", "LogNode")
    compact = tlog.CompactRange.from_nodes(0, lambda keys: {})
    for start in range(0, len(created), 5000):
        chunk = created[start : start + 5000]
        nodes = compact.append([tlog.leaf_hash_of_entry(bytes.fromhex(h)) for _, h in chunk])
        leaf.objects.using(alias).bulk_create(
            [leaf(index=start + offset, entry_id=entry_id) for offset, (entry_id, _) in enumerate(chunk)]
        )
        node.objects.using(alias).bulk_create(
            [node(key=tlog.node_key(level, index), hash=digest) for level, index, digest in nodes]
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0007_checkpoint_triggers"),
        ("ledger", "0005_audit_hash"),
    ]

    operations = [
        migrations.RunPython(refuse_archived_lane_rows, migrations.RunPython.noop),
        migrations.RunPython(lanes.drop_triggers, migrations.RunPython.noop, atomic=False),
        migrations.RunPython(
            signed_records.drop_triggers, migrations.RunPython.noop, atomic=False
        ),
        migrations.RenameModel("AuditEntry", "LegacyAuditEntry"),
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64, unique=True)),
                ("encoding_version", models.PositiveSmallIntegerField(default=2)),
                ("body", models.BinaryField()),
                ("object_type", models.CharField(max_length=64)),
                ("object_id", models.CharField(max_length=64)),
                ("action", models.CharField(max_length=16)),
                ("event_type", models.CharField(max_length=64)),
                ("actor_type", models.CharField(max_length=16)),
                ("actor_id", models.CharField(max_length=64)),
                ("request_id", models.CharField(blank=True, default="", max_length=64)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "verbose_name_plural": "audit entries",
                "indexes": [
                    models.Index(fields=["created_at"], name="audit_entry_created"),
                    models.Index(fields=["actor_id"], name="audit_entry_actor"),
                    models.Index(fields=["event_type", "created_at"], name="audit_entry_event"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("object_type", "object_id", "prev_hash"),
                        name="audit_object_chain",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="LogLeaf",
            fields=[
                ("index", models.PositiveBigIntegerField(primary_key=True, serialize=False)),
                ("entry_id", models.PositiveBigIntegerField(unique=True)),
            ],
        ),
        migrations.CreateModel(
            name="LogNode",
            fields=[
                ("key", models.PositiveBigIntegerField(primary_key=True, serialize=False)),
                ("hash", models.BinaryField(max_length=32)),
            ],
        ),
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                ("size", models.PositiveBigIntegerField(primary_key=True, serialize=False)),
                ("root", models.CharField(max_length=64)),
                ("note", models.TextField()),
                ("created_at", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="Cosignature",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("witness", models.CharField(max_length=200)),
                ("line", models.TextField()),
                ("signed_at", models.DateTimeField()),
                ("received_at", models.DateTimeField(auto_now_add=True)),
                (
                    "checkpoint",
                    models.ForeignKey(
                        on_delete=models.deletion.PROTECT,
                        related_name="cosignatures",
                        to="audit.checkpoint",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("checkpoint", "witness"), name="cosignature_once"
                    )
                ]
            },
        ),
        migrations.CreateModel(
            name="LogPublication",
            fields=[
                ("name", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("entries", models.PositiveBigIntegerField(default=0)),
                ("checkpoint_size", models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(move_lanes_into_log, migrations.RunPython.noop),
        migrations.DeleteModel("LegacyAuditEntry"),
        migrations.DeleteModel("LaneHead"),
        migrations.DeleteModel("AuditCheckpoint"),
        migrations.RemoveConstraint("archivesegment", "segment_lane_first_unique"),
        migrations.RemoveConstraint("archivesegment", "segment_range_order"),
        migrations.RemoveIndex("archivesegment", "segment_range"),
        migrations.RemoveField("archivesegment", "lane"),
        migrations.RemoveField("archivesegment", "first_seq"),
        migrations.RemoveField("archivesegment", "last_seq"),
        migrations.RemoveField("archivesegment", "first_prev_hash"),
        migrations.RemoveField("archivesegment", "last_hash"),
        migrations.AddField(
            "archivesegment",
            "first_index",
            models.PositiveBigIntegerField(default=0, unique=True),
            preserve_default=False,
        ),
        migrations.AddField(
            "archivesegment",
            "last_index",
            models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AlterField(
            "archivesegment", "format_version", models.PositiveSmallIntegerField(default=2)
        ),
        migrations.AddConstraint(
            "archivesegment",
            models.CheckConstraint(
                condition=models.Q(last_index__gte=models.F("first_index")),
                name="segment_index_order",
            ),
        ),
        migrations.AddIndex(
            "archivesegment",
            models.Index(fields=["first_index", "last_index"], name="segment_indexes"),
        ),
        migrations.RemoveField("retentionpurge", "key_id"),
        migrations.RemoveField("retentionpurge", "signed"),
        migrations.AddField(
            "retentionpurge",
            "first_index",
            models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            "retentionpurge",
            "last_index",
            models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField("retentionpurge", "detail", models.JSONField(default=list)),
        migrations.RemoveField("verificationrun", "lanes_total"),
        migrations.RemoveField("verificationrun", "lanes_done"),
        migrations.RemoveField("verificationrun", "checkpoint_number"),
        migrations.AddField(
            "verificationrun", "total", models.PositiveBigIntegerField(default=0)
        ),
        migrations.AddField("verificationrun", "done", models.PositiveBigIntegerField(default=0)),
        migrations.AddField(
            "verificationrun",
            "checkpoint_size",
            models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(create_triggers, drop_triggers, atomic=False),
    ]
