import re

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

AUDIT_TABLES = ["audit_auditentry", "audit_cosignature"]
# Written by the sequencer only (the log, its checkpoints, how far it published).
LOG_TABLES = ["audit_logleaf", "audit_lognode", "audit_checkpoint", "audit_logpublication"]
# Written by the archiver only; the application reads them (and records on-demand checks).
ARCHIVER_TABLES = ["audit_archivesegment", "audit_archivelease", "audit_retentionpurge"]
CHECK_COLUMNS = "checked_at, check_ok, check_detail"


class Command(BaseCommand):
    help = (
        "Print (or --apply) the least-privilege MariaDB grants: the application's user may "
        "only INSERT and SELECT audit entries and only read the log; the sequencer alone "
        "appends to the log; the archiver may also DELETE entries (the trigger still admits "
        "only those a verified archive segment covers). Run as a DBA, or as the schema's "
        "owner (ALL on the schema WITH GRANT OPTION, as compose's migrate job does)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=None, help="schema name (default: current)")
        parser.add_argument("--app-user", default="payflow")
        parser.add_argument("--archiver-user", default="payflow_archiver")
        parser.add_argument("--sequencer-user", default="payflow_sequencer")
        parser.add_argument("--host", default="%")
        parser.add_argument("--apply", action="store_true", help="execute instead of printing")

    def handle(
        self, *args, database, app_user, archiver_user, sequencer_user, host, apply, **options
    ):
        schema = database or connection.settings_dict["NAME"]
        for option, value in (
            ("--app-user", app_user),
            ("--archiver-user", archiver_user),
            ("--sequencer-user", sequencer_user),
        ):
            if not _ACCOUNT.fullmatch(value):
                raise CommandError(
                    f"{option} must be a MariaDB user name: letters, digits, _ . - "
                    "(at most 80 characters)"
                )
        if not _HOST.fullmatch(host):
            raise CommandError("--host must be a host name, an address or % (no quotes)")
        if "`" in schema:
            raise CommandError("--database must be a schema name without backquotes")
        statements = grant_statements(schema, app_user, archiver_user, host, sequencer_user)
        if not apply:
            self.stdout.write(";\n".join(statements) + ";")
            return
        with connection.cursor() as cursor:
            for statement in statements:
                account = statement.removeprefix(_REVOKE_ALL)
                if account == statement:
                    cursor.execute(statement)
                else:
                    _revoke_everything(cursor, schema, account)
        self.stdout.write(f"applied {len(statements)} statements")


_REVOKE_ALL = "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "
# Access denied for lack of CREATE USER; no grant of that account on the schema or table.
_NEEDS_CREATE_USER, _NO_SUCH_GRANT, _NO_SUCH_TABLE_GRANT = 1227, 1141, 1147


def _revoke_everything(cursor, schema: str, account: str) -> None:
    """Take every privilege from ``account`` before granting its set. A DBA revokes them
    all at once; the schema's owner (no CREATE USER privilege, error 1227) revokes what it
    can have granted: the schema's and each table's privileges and GRANT OPTION (column
    privileges go with their table's), none of which may exist yet. Grants on a table
    that no longer exists are not seen (MariaDB keeps them by name)."""
    try:
        cursor.execute(_REVOKE_ALL + account)
        return
    except DatabaseError as exc:
        if exc.args[0] != _NEEDS_CREATE_USER:
            raise
    tables = connection.introspection.table_names(cursor)
    for target in [f"`{schema}`.*", *(f"`{schema}`.`{table}`" for table in tables)]:
        for privileges in ("ALL PRIVILEGES", "GRANT OPTION"):
            try:
                cursor.execute(f"REVOKE {privileges} ON {target} FROM {account}")
            except DatabaseError as exc:
                if exc.args[0] not in (_NO_SUCH_GRANT, _NO_SUCH_TABLE_GRANT):
                    raise


# What the statements quote: nothing that could end the quoted name.
_ACCOUNT = re.compile(r"[A-Za-z0-9_.\-]{1,80}")
_HOST = re.compile(r"[A-Za-z0-9_.%:\-]{1,255}")


def grant_statements(
    schema: str,
    app_user: str,
    archiver_user: str,
    host: str,
    sequencer_user: str = "payflow_sequencer",
) -> list[str]:
    """Users must exist (CREATE USER … IDENTIFIED BY …, passwords from your secret store)."""
    app, archiver = f"'{app_user}'@'{host}'", f"'{archiver_user}'@'{host}'"
    sequencer = f"'{sequencer_user}'@'{host}'"
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    other = [t for t in tables if t not in AUDIT_TABLES + ARCHIVER_TABLES + LOG_TABLES]
    statements = [_REVOKE_ALL + app]
    # Application: full DML on its own tables, only INSERT and SELECT on the audit trail,
    # only SELECT on the archive's records (plus recording an auditor's on-demand check).
    statements += [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema}`.`{t}` TO {app}" for t in other
    ]
    statements += [f"GRANT SELECT, INSERT ON `{schema}`.`{t}` TO {app}" for t in AUDIT_TABLES]
    statements += [
        f"GRANT SELECT ON `{schema}`.`{t}` TO {app}" for t in ARCHIVER_TABLES + LOG_TABLES
    ]
    statements.append(
        f"GRANT UPDATE ({CHECK_COLUMNS}) ON `{schema}`.`audit_archivesegment` TO {app}"
    )
    # Archiver: reads everything; records segments, leases and purge records; deletes
    # archived rows (the trigger admits only rows a verified segment covers); appends the
    # purge's own audit entry. It cannot UPDATE audit entries or touch the log.
    statements.append(_REVOKE_ALL + archiver)
    statements.append(f"GRANT SELECT ON `{schema}`.* TO {archiver}")
    statements.append(f"GRANT INSERT, DELETE ON `{schema}`.`audit_auditentry` TO {archiver}")
    statements += [
        f"GRANT INSERT, UPDATE ON `{schema}`.`{t}` TO {archiver}" for t in ARCHIVER_TABLES
    ]
    # Its worker records each scheduled run (payflow.jobs).
    statements.append(f"GRANT INSERT, UPDATE ON `{schema}`.`payflow_jobrun` TO {archiver}")
    # Sequencer: reads the entries, appends to the log (INSERT only: leaves, nodes and
    # checkpoints are never changed), keeps its lease and its publication mark.
    statements.append(_REVOKE_ALL + sequencer)
    statements.append(f"GRANT SELECT ON `{schema}`.* TO {sequencer}")
    statements += [
        f"GRANT INSERT ON `{schema}`.`{t}` TO {sequencer}"
        for t in ("audit_logleaf", "audit_lognode", "audit_checkpoint")
    ]
    statements += [
        f"GRANT INSERT, UPDATE ON `{schema}`.`{t}` TO {sequencer}"
        for t in ("audit_logpublication", "audit_archivelease")
    ]
    return statements
