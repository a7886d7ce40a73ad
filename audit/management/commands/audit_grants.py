from django.core.management.base import BaseCommand
from django.db import connection

AUDIT_TABLES = ["audit_auditentry", "audit_auditcheckpoint"]
ARCHIVER_TABLES = ["audit_archivesegment"]


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
    other = [t for t in tables if t not in AUDIT_TABLES]
    statements = [f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {app}"]
    # Application: full DML on its own tables, only INSERT and SELECT on the audit trail.
    statements += [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema}`.`{t}` TO {app}" for t in other
    ]
    statements += [f"GRANT SELECT, INSERT ON `{schema}`.`{t}` TO {app}" for t in AUDIT_TABLES]
    # Archiver: reads the trail, records segments, deletes archived rows (trigger-checked).
    statements.append(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {archiver}")
    statements += [f"GRANT SELECT, DELETE ON `{schema}`.`audit_auditentry` TO {archiver}"]
    statements += [
        f"GRANT SELECT, INSERT, UPDATE ON `{schema}`.`{t}` TO {archiver}" for t in ARCHIVER_TABLES
    ]
    statements += [f"GRANT SELECT ON `{schema}`.`audit_lanehead` TO {archiver}"]
    return statements
