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
    app_user.execute("UPDATE ledger_merchant SET name = name WHERE 1 = 0")
    app_user.execute("DELETE FROM payflow_idempotencyrecord WHERE 1 = 0")
