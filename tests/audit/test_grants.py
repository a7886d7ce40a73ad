"""The least-privilege grants (``manage.py audit_grants``), applied on the real server: the
application appends entries but cannot change them or touch the log; the sequencer alone
appends to the log; the archiver alone deletes archived entries."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import MySQLdb
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.models import ArchiveSegment, AuditEntry, Checkpoint, LogLeaf
from audit.verify import verify_log
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import TEST_SIGNER_KEY, sequence

pytestmark = pytest.mark.django_db(transaction=True)

USERS = {
    "app": ("payflow_grants_test", "grants-test-password-1"),
    "archiver": ("payflow_archiver_test", "x-archiver-1"),
    "sequencer": ("payflow_sequencer_test", "x-sequencer-1"),
}
PRIVILEGE_ERRORS = (1142, 1143, 1227, 1044)  # table, column, super, database access denied
ROOT = Path(__file__).resolve().parents[2]


def _connect(role):
    user, password = USERS[role]
    settings = connection.settings_dict
    return MySQLdb.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=int(settings["PORT"] or 3306),
        user=user,
        password=password,
        database=settings["NAME"],
    )


def _database_url(role):
    user, password = USERS[role]
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 3306
    return f"mysql://{user}:{password}@{host}:{port}/{db['NAME']}"


def _apply_grants():
    call_command(
        "audit_grants",
        "--app-user",
        USERS["app"][0],
        "--archiver-user",
        USERS["archiver"][0],
        "--sequencer-user",
        USERS["sequencer"][0],
        "--apply",
    )


@pytest.fixture
def grants():
    with connection.cursor() as cursor:
        for user, password in USERS.values():
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    _apply_grants()
    yield
    with connection.cursor() as cursor:
        for user, _ in USERS.values():
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.fixture
def app_user(grants):
    client = _connect("app")
    yield client.cursor()
    client.close()


@pytest.fixture
def sequencer_user(grants):
    client = _connect("sequencer")
    yield client.cursor()
    client.close()


def refused(cursor, statement, params=None, codes=PRIVILEGE_ERRORS):
    with pytest.raises(MySQLdb.OperationalError) as denied:
        cursor.execute(statement, params)
    assert denied.value.args[0] in codes, (statement, denied.value.args)


def test_the_grants_are_printed_without_apply(grants, capsys):
    call_command("audit_grants", "--app-user", "someone", "--sequencer-user", "seq")
    out = capsys.readouterr().out
    schema = connection.settings_dict["NAME"]
    assert f"GRANT SELECT, INSERT ON `{schema}`.`audit_auditentry` TO 'someone'@'%'" in out
    assert f"GRANT INSERT ON `{schema}`.`audit_checkpoint` TO 'seq'@'%'" in out
    assert f"GRANT SELECT ON `{schema}`.`audit_checkpoint` TO 'someone'@'%'" in out
    protected = [
        "audit_auditentry",
        "audit_cosignature",
        "audit_logleaf",
        "audit_lognode",
        "audit_checkpoint",
        "audit_logpublication",
        "audit_archivesegment",
        "audit_retentionpurge",
    ]
    for table in protected:
        assert f"UPDATE, DELETE ON `{schema}`.`{table}` TO 'someone'" not in out, table


def test_the_app_user_can_read_and_append_audit_entries_but_not_change_or_delete_them(
    app_user, merchant
):
    from tests.ledger.conftest import pay

    pay(merchant)
    app_user.execute("SELECT COUNT(*) FROM audit_auditentry")
    assert app_user.fetchone()[0] == AuditEntry.objects.count() > 0
    for statement in (
        "UPDATE audit_auditentry SET request_id = 'x'",
        "DELETE FROM audit_auditentry",
        "DROP TRIGGER audit_entry_no_update",
        "TRUNCATE audit_auditentry",
        "UPDATE audit_cosignature SET line = 'x'",
        "DELETE FROM audit_cosignature",
    ):
        refused(app_user, statement)
    assert AuditEntry.objects.count() > 0


def test_the_app_user_reads_the_log_but_cannot_append_to_it_or_sign_it(app_user, merchant):
    from tests.ledger.conftest import pay

    pay(merchant)
    sequence()
    for table in ("audit_logleaf", "audit_lognode", "audit_checkpoint", "audit_logpublication"):
        app_user.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - fixed names
    refused(app_user, "INSERT INTO audit_logleaf (`index`, entry_id) VALUES (999999, 999999)")
    refused(app_user, "INSERT INTO audit_lognode (`key`, hash) VALUES (999999, REPEAT('a', 32))")
    refused(
        app_user,
        "INSERT INTO audit_checkpoint (size, root, note, created_at) "
        "VALUES (999999, REPEAT('a', 64), 'forged', NOW())",
    )
    refused(app_user, "UPDATE audit_logpublication SET entries = 0")
    refused(app_user, "UPDATE audit_archivelease SET owner = 'me'")  # the sequencer's lease
    assert Checkpoint.objects.count() == 1


def test_the_app_user_keeps_full_access_to_its_own_tables(app_user):
    from ledger.models import Merchant
    from ledger.services.merchants import merchant_create

    merchant = merchant_create(name="grants")
    renamed = app_user.execute(
        "UPDATE ledger_merchant SET name = 'renamed' WHERE id = %s", [merchant.pk.hex]
    )
    # DELETE is granted on the app's own tables (none matches: no privilege error)
    deleted = app_user.execute("DELETE FROM payflow_idempotencyrecord WHERE id < 0")
    app_user.connection.commit()
    assert (renamed, deleted) == (1, 0)
    assert Merchant.objects.get(pk=merchant.pk).name == "renamed"


def test_the_app_user_reads_archive_records_but_cannot_forge_a_verification(app_user):
    app_user.execute("SELECT COUNT(*) FROM audit_archivesegment")
    app_user.execute("UPDATE audit_archivesegment SET check_ok = 1 WHERE 1 = 0")  # a check
    for statement in (
        "UPDATE audit_archivesegment SET verified_at = NOW()",
        "INSERT INTO audit_retentionpurge (created_at, first_index, last_index, "
        "segment_count, row_count, detail) VALUES (NOW(), 0, 0, 0, 0, '[]')",
        "DELETE FROM audit_archivesegment",
    ):
        refused(app_user, statement, codes=(1142, 1143))


def test_the_sequencer_runs_as_its_own_database_user_and_can_only_append(
    sequencer_user, merchant, tmp_path
):
    """``audit_sequencer``, connected as the sequencer user, appends and signs; that user
    still cannot change an entry, a leaf or a checkpoint, nor write a ledger table."""
    from tests.ledger.conftest import pay

    pay(merchant)
    key = tmp_path / "signing.key"
    key.write_text(TEST_SIGNER_KEY)
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_sequencer", "--once", "--no-publish"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": _database_url("sequencer"),
            "AUDIT_SIGNING_KEY_FILE": str(key),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = AuditEntry.objects.count()
    assert f"appended {written}, checkpoint {written}, log size {written}" in result.stdout
    assert LogLeaf.objects.count() == written
    assert verify_log().ok
    for statement in (
        "UPDATE audit_auditentry SET request_id = 'x'",
        "INSERT INTO audit_auditentry (prev_hash, hash, encoding_version, body, object_type, "
        "object_id, action, event_type, actor_type, actor_id, request_id, created_at) VALUES "
        "(REPEAT('0', 64), REPEAT('f', 64), 2, '{}', 'x', 'x', 'x', 'x', 'x', 'x', '', NOW())",
        "UPDATE audit_checkpoint SET note = 'x'",
        "DELETE FROM audit_logleaf",
        "UPDATE ledger_merchant SET name = 'x'",
    ):
        refused(sequencer_user, statement)


def test_the_archiver_runs_as_its_own_database_user(app_user, tmp_path):
    """The archive command, connected as the archiver user, writes segments and deletes the
    archived entries; the app user still cannot delete them."""
    now = timezone.now()
    day = timezone.timedelta(days=1)
    seed_chain(300, start=now - 600 * day, end=now - 500 * day, objects=4)
    sequence()
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_archive"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": _database_url("archiver"),
            "AUDIT_ARCHIVE_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "archived 300 entries in 1 segments" in result.stdout
    segment = ArchiveSegment.objects.get()
    assert (segment.status, segment.first_index, segment.last_index) == (
        ArchiveSegment.ARCHIVED,
        0,
        299,
    )
    assert not AuditEntry.objects.filter(object_type="audit.seed").exists()
    seed_chain(5, start=now - 400 * day, end=now - 399 * day, objects=4)
    refused(
        app_user, "DELETE FROM audit_auditentry WHERE object_type = 'audit.seed'", codes=(1142,)
    )
    assert AuditEntry.objects.filter(object_type="audit.seed").count() == 5


def test_a_deploy_never_takes_a_privilege_away_from_a_running_service(grants):
    """Found in review (issue 19): ``audit_grants --apply`` revoked everything, then
    granted table by table, so on every deploy the running web and workers lost their
    tables for the length of the run (1142, answered 500). Now the grants come first and
    only what is not granted is revoked: a client querying throughout never fails."""
    failures: list[tuple] = []
    queries = 0
    stop = threading.Event()

    def client():
        nonlocal queries
        session = _connect("app").cursor()
        while not stop.is_set():
            for statement in (
                "SELECT COUNT(*) FROM ledger_merchant",
                "SELECT COUNT(*) FROM audit_auditentry",
                "SELECT COUNT(*) FROM audit_checkpoint",
            ):
                try:
                    session.execute(statement)
                    session.fetchall()
                    queries += 1
                except MySQLdb.OperationalError as exc:
                    failures.append(exc.args)

    watcher = threading.Thread(target=client)
    watcher.start()
    try:
        for _ in range(3):
            _apply_grants()
    finally:
        stop.set()
        watcher.join(30)
    assert queries > 0
    assert failures == []


def test_privileges_granted_beyond_the_set_are_taken_away(grants, app_user):
    schema = connection.settings_dict["NAME"]
    app = f"'{USERS['app'][0]}'@'%'"
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT UPDATE, DELETE ON `{schema}`.`audit_auditentry` TO {app}")
        cursor.execute(f"GRANT CREATE, DROP ON `{schema}`.* TO {app} WITH GRANT OPTION")
    _apply_grants()
    session = _connect("app").cursor()
    refused(session, "UPDATE audit_auditentry SET request_id = 'x'")
    refused(session, "CREATE TABLE zz_probe (id INT)")
    refused(session, f"GRANT SELECT ON `{schema}`.`ledger_merchant` TO {app}")
    session.execute("SELECT COUNT(*) FROM ledger_merchant")  # what it should keep, it keeps
