"""Create the lane heads and the triggers that keep audit rows immutable.

UPDATE of an audit row is always refused. DELETE is refused unless a *verified* archive
segment covers the row (the archiver's job, issue 7). The ORM refuses both as well; the
triggers hold against raw SQL from the application's database user.
"""

from django.conf import settings
from django.db import migrations

IMMUTABLE = "audit rows are immutable"
NOT_ARCHIVED = "audit rows can only be deleted once a verified archive segment covers them"

MARIADB = [
    f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_auditentry FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{IMMUTABLE}'""",
    f"""CREATE TRIGGER audit_entry_delete_only_archived BEFORE DELETE ON audit_auditentry
        FOR EACH ROW BEGIN
          IF NOT EXISTS (
            SELECT 1 FROM audit_archivesegment s
            WHERE s.lane = OLD.lane AND OLD.seq BETWEEN s.first_seq AND s.last_seq
              AND s.verified_at IS NOT NULL
          ) THEN
            SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{NOT_ARCHIVED}';
          END IF;
        END""",
]
SQLITE = [
    f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_auditentry
        BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END""",
    f"""CREATE TRIGGER audit_entry_delete_only_archived BEFORE DELETE ON audit_auditentry
        WHEN NOT EXISTS (
          SELECT 1 FROM audit_archivesegment s
          WHERE s.lane = OLD.lane AND OLD.seq BETWEEN s.first_seq AND s.last_seq
            AND s.verified_at IS NOT NULL)
        BEGIN SELECT RAISE(ABORT, '{NOT_ARCHIVED}'); END""",
]
DROP = [
    "DROP TRIGGER IF EXISTS audit_entry_no_update",
    "DROP TRIGGER IF EXISTS audit_entry_delete_only_archived",
]


def create_triggers(apps, schema_editor):
    statements = {"mysql": MARIADB, "sqlite": SQLITE}[schema_editor.connection.vendor]
    for statement in statements:
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    for statement in DROP:
        schema_editor.execute(statement)


def create_lanes(apps, schema_editor):
    lane_head = apps.get_model("audit", "LaneHead")
    db = schema_editor.connection.alias
    existing = set(lane_head.objects.using(db).values_list("lane", flat=True))
    lanes = getattr(settings, "AUDIT_LANES", 16)  # the setting is gone since audit 0008
    lane_head.objects.using(db).bulk_create(
        [lane_head(lane=lane) for lane in range(lanes) if lane not in existing]
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(create_lanes, migrations.RunPython.noop),
        # DDL: MariaDB cannot roll it back, so not inside a transaction.
        migrations.RunPython(create_triggers, drop_triggers, atomic=False),
    ]
