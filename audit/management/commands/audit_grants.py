from django.core.management.base import BaseCommand
from django.db import connection

AUDIT_TABLES = ["audit_auditentry", "audit_auditcheckpoint"]
# Written by the archiver only; the application reads them (and records on-demand checks).
ARCHIVER_TABLES = ["audit_archivesegment", "audit_archivelease", "audit_retentionpurge"]
CHECK_COLUMNS = "checked_at, check_ok, check_detail"


class Command(BaseCommand):
    help = (
        "Print (or --apply) the least-privilege MariaDB grants: the application's user may "
        "only INSERT and SELECT audit rows; the archiver may also DELETE them (the trigger "
        "still admits only rows a verified archive segment covers). Run as a DBA."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=None, help="schema name (default: current)")
        parser.add_argument("--app-user", default="payflow")
        parser.add_argument("--archiver-user", default="payflow_archiver")
        parser.add_argument("--host", default="%")
        parser.add_argument("--apply", action="store_true", help="execute instead of printing")

    def handle(self, *args, database, app_user, archiver_user, host, apply, **options):
        schema = database or connection.settings_dict["NAME"]
        statements = grant_statements(schema, app_user, archiver_user, host)
        if not apply:
            self.stdout.write(";\n".join(statements) + ";")
            return
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(f"applied {len(statements)} statements")


def grant_statements(schema: str, app_user: str, archiver_user: str, host: str) -> list[str]:
    """Users must exist (CREATE USER … IDENTIFIED BY …, passwords from your secret store)."""
    app, archiver = f"'{app_user}'@'{host}'", f"'{archiver_user}'@'{host}'"
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    other = [t for t in tables if t not in AUDIT_TABLES + ARCHIVER_TABLES]
    statements = [f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {app}"]
    # Application: full DML on its own tables, only INSERT and SELECT on the audit trail,
    # only SELECT on the archive's records (plus recording an auditor's on-demand check).
    statements += [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema}`.`{t}` TO {app}" for t in other
    ]
    statements += [f"GRANT SELECT, INSERT ON `{schema}`.`{t}` TO {app}" for t in AUDIT_TABLES]
    statements += [f"GRANT SELECT ON `{schema}`.`{t}` TO {app}" for t in ARCHIVER_TABLES]
    statements.append(
        f"GRANT UPDATE ({CHECK_COLUMNS}) ON `{schema}`.`audit_archivesegment` TO {app}"
    )
    # Archiver: reads everything; records segments, leases and purge records; deletes
    # archived rows (the trigger admits only rows a verified segment covers); appends the
    # purge's own audit row (lane head, outbox mirror). It cannot UPDATE audit rows.
    statements.append(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {archiver}")
    statements.append(f"GRANT SELECT ON `{schema}`.* TO {archiver}")
    statements.append(f"GRANT INSERT, DELETE ON `{schema}`.`audit_auditentry` TO {archiver}")
    statements += [
        f"GRANT INSERT, UPDATE ON `{schema}`.`{t}` TO {archiver}"
        for t in [*ARCHIVER_TABLES, "audit_lanehead"]
    ]
    statements.append(f"GRANT INSERT ON `{schema}`.`outbox_outboxevent` TO {archiver}")
    # Its worker records each scheduled run (payflow.jobs).
    statements.append(f"GRANT INSERT, UPDATE ON `{schema}`.`payflow_jobrun` TO {archiver}")
    return statements
