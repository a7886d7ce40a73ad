"""Signed checkpoints and retention records are append-only in the database too.

Without a trigger, ``DELETE FROM audit_auditcheckpoint`` removed the signed heads an edited
and re-hashed chain was checked against, so an earlier re-hash then passed verification
(issue 15). UPDATE and DELETE of both tables are now refused by triggers (MariaDB and
SQLite), as for audit rows; the application's database user has INSERT and SELECT only on
them (``manage.py audit_grants``).
"""

from django.db import migrations

IMMUTABLE = "signed audit records are immutable"
TABLES = ("audit_auditcheckpoint", "audit_retentionpurge")


def _statements(vendor):
    for table in TABLES:
        for event in ("UPDATE", "DELETE"):
            name = f"{table}_no_{event.lower()}"
            if vendor == "mysql":
                yield (
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
                    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{IMMUTABLE}'"
                )
            else:
                yield (
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"
                )


DROP = [f"DROP TRIGGER IF EXISTS {t}_no_{e}" for t in TABLES for e in ("update", "delete")]


def create_triggers(apps, schema_editor):
    for statement in _statements(schema_editor.connection.vendor):
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    for statement in DROP:
        schema_editor.execute(statement)


def mariadb_statements():
    return list(_statements("mysql"))


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_archiving_and_retention")]

    operations = [migrations.RunPython(create_triggers, drop_triggers, atomic=False)]
