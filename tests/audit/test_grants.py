"""The least-privilege grants, applied on the real server, hold for the app user."""

import MySQLdb
import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

APP_USER, PASSWORD = "payflow_grants_test", "grants-test-password-1"


@pytest.fixture
def app_user():
    with connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{APP_USER}'@'%'")
        cursor.execute(f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
        cursor.execute("DROP USER IF EXISTS 'payflow_archiver_test'@'%'")
        cursor.execute("CREATE USER 'payflow_archiver_test'@'%' IDENTIFIED BY 'x-archiver-1'")
    call_command(
        "audit_grants",
        "--app-user",
        APP_USER,
        "--archiver-user",
        "payflow_archiver_test",
        "--apply",
    )
    settings = connection.settings_dict
    client = MySQLdb.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=int(settings["PORT"] or 3306),
        user=APP_USER,
        password=PASSWORD,
        database=settings["NAME"],
    )
    yield client.cursor()
    client.close()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{APP_USER}'@'%'")
        cursor.execute("DROP USER IF EXISTS 'payflow_archiver_test'@'%'")


def test_the_app_user_can_read_and_append_audit_rows_but_not_change_or_delete_them(app_user):
    app_user.execute("SELECT COUNT(*) FROM audit_auditentry")
    for statement in (
        "UPDATE audit_auditentry SET reason = 'x'",
        "DELETE FROM audit_auditentry",
        "DROP TRIGGER audit_entry_no_update",
        "TRUNCATE audit_auditentry",
    ):
        with pytest.raises(MySQLdb.OperationalError) as denied:
            app_user.execute(statement)
        assert denied.value.args[0] in (1142, 1227, 1044), statement  # privilege errors


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


ARCHIVER_PASSWORD = "x-archiver-1"


def test_the_app_user_reads_archive_records_but_cannot_forge_a_verification(app_user):
    app_user.execute("SELECT COUNT(*) FROM audit_archivesegment")
    app_user.execute("UPDATE audit_archivesegment SET check_ok = 1 WHERE 1 = 0")  # a check
    for statement in (
        "UPDATE audit_archivesegment SET verified_at = NOW()",
        "INSERT INTO audit_retentionpurge (created_at, key_id, signed, segment_count, "
        "row_count) VALUES (NOW(), 'k', '{}', 0, 0)",
        "DELETE FROM audit_archivesegment",
    ):
        with pytest.raises(MySQLdb.OperationalError) as denied:
            app_user.execute(statement)
        assert denied.value.args[0] in (1142, 1143), statement


def test_the_archiver_runs_as_its_own_database_user(app_user, tmp_path):
    """The archive command, connected as the archiver user, writes segments and deletes the
    archived rows; the app user still cannot delete them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from django.utils import timezone

    from audit.checkpoints import audit_checkpoint_create
    from audit.models import ArchiveSegment, AuditEntry
    from tests.audit.chainseed import seed_chain

    now = timezone.now()
    day = timezone.timedelta(days=1)
    seed_chain(300, start=now - 600 * day, end=now - 500 * day, lanes=[0])
    audit_checkpoint_create()
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 3306
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_archive"],
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"mysql://payflow_archiver_test:{ARCHIVER_PASSWORD}@{host}:{port}"
            f"/{db['NAME']}",
            "AUDIT_ARCHIVE_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "archived 300 rows in 1 segments" in result.stdout
    assert ArchiveSegment.objects.get().status == ArchiveSegment.ARCHIVED
    assert AuditEntry.objects.count() == 0
    seed_chain(5, start=now - 400 * day, end=now - 399 * day, lanes=[0])
    with pytest.raises(MySQLdb.OperationalError) as denied:
        app_user.execute("DELETE FROM audit_auditentry WHERE lane = 0")
    assert denied.value.args[0] == 1142
