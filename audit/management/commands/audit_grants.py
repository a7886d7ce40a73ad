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
        "only those a verified archive segment covers). Grants first, then revokes of the "
        "rest, so a deploy never takes a running service's privileges away. Run as a DBA, "
        "or as the schema's owner (ALL on the schema WITH GRANT OPTION, as compose's "
        "migrate job does). Privileges ON *.* are not touched."
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
            self.stdout.write(
                "-- The grants first, then the REVOKEs of everything else: run with\n"
                "-- `mariadb --force`, since a REVOKE of what was never granted fails harmlessly\n"
                "-- (1141, 1147). Privileges ON *.* are not touched: create the accounts\n"
                "-- with none.\n"
                + ";\n".join(statements)
                + ";"
            )
            return
        with connection.cursor() as cursor:
            for statement in statements:
                try:
                    cursor.execute(statement)
                except DatabaseError as exc:
                    # A REVOKE of what was never granted: nothing to take away.
                    revoke = statement.startswith("REVOKE")
                    if not revoke or exc.args[0] not in _NOTHING_TO_REVOKE:
                        raise
        self.stdout.write(f"applied {len(statements)} statements")


# No grant of that account on the schema (1141) or on the table (1147).
_NOTHING_TO_REVOKE = (1141, 1147)
# What a table-level and a schema-level grant can hold (MariaDB 10.11).
_TABLE_PRIVILEGES = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "REFERENCES", "INDEX",
    "ALTER", "CREATE VIEW", "SHOW VIEW", "TRIGGER", "DELETE HISTORY",
)  # fmt: skip
_SCHEMA_PRIVILEGES = (
    *_TABLE_PRIVILEGES, "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE", "CREATE ROUTINE",
    "ALTER ROUTINE", "EVENT",
)  # fmt: skip
_COLUMN_GRANT = re.compile(r"GRANT [A-Z]+ \([^)]*\) ON \S+ TO \S+")
_GRANT = re.compile(r"GRANT (?P<privileges>[A-Z, ]+) ON (?P<level>\S+) TO (?P<account>\S+)")


def revoke_the_rest(grants: list[str], accounts: list[str], schema: str, tables: list[str]):
    """The REVOKEs that take from each account every privilege on the schema and its tables
    that ``grants`` do not give it, and GRANT OPTION everywhere, run *after* the grants: at
    no moment of a deploy does a running service lack a privilege it has before and after
    (revoking everything first left the app without its tables for the length of the run,
    and its requests answered 500)."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for statement in grants:
        match = _GRANT.fullmatch(statement)
        if match:
            privileges = {p.strip() for p in match["privileges"].split(",")}
            wanted.setdefault((match["account"], match["level"]), set()).update(privileges)
    statements = []
    levels: list[tuple[str, tuple[str, ...]]] = [(f"`{schema}`.*", _SCHEMA_PRIVILEGES)]
    levels += [(f"`{schema}`.`{table}`", _TABLE_PRIVILEGES) for table in tables]
    for account in accounts:
        for level, possible in levels:
            extra = [p for p in possible if p not in wanted.get((account, level), set())]
            statements.append(f"REVOKE {', '.join(extra)} ON {level} FROM {account}")
            statements.append(f"REVOKE GRANT OPTION ON {level} FROM {account}")
    # Revoking a table's UPDATE also takes its column UPDATEs: those are granted again
    # (the one privilege with a moment's gap: recording an auditor's on-demand check).
    statements += [statement for statement in grants if _COLUMN_GRANT.fullmatch(statement)]
    return statements


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
    statements = []
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
    statements.append(f"GRANT SELECT ON `{schema}`.* TO {archiver}")
    statements.append(f"GRANT INSERT, DELETE ON `{schema}`.`audit_auditentry` TO {archiver}")
    statements += [
        f"GRANT INSERT, UPDATE ON `{schema}`.`{t}` TO {archiver}" for t in ARCHIVER_TABLES
    ]
    # Its worker records each scheduled run (payflow.jobs).
    statements.append(f"GRANT INSERT, UPDATE ON `{schema}`.`payflow_jobrun` TO {archiver}")
    # Sequencer: reads the entries, appends to the log (INSERT only: leaves, nodes and
    # checkpoints are never changed), keeps its lease and its publication mark.
    statements.append(f"GRANT SELECT ON `{schema}`.* TO {sequencer}")
    statements += [
        f"GRANT INSERT ON `{schema}`.`{t}` TO {sequencer}"
        for t in ("audit_logleaf", "audit_lognode", "audit_checkpoint")
    ]
    statements += [
        f"GRANT INSERT, UPDATE ON `{schema}`.`{t}` TO {sequencer}"
        for t in ("audit_logpublication", "audit_archivelease")
    ]
    return statements + revoke_the_rest(statements, [app, archiver, sequencer], schema, tables)
