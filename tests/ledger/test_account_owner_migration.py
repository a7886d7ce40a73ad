"""Migration ledger 0002 on MariaDB: duplicate platform accounts (as the old schema let
concurrent first payments create them) are merged, their lines moved, the ledger balanced,
and each merge recorded in the audit trail."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditEntry
from audit.verify import verify_all
from ledger.models import Account, AccountKind, JournalLine
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.merchants import merchant_create
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("ledger", "0001_initial")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def test_duplicate_platform_accounts_are_merged_with_their_lines_and_the_merge_audited():
    # given: payments booked on three acquirer_clearing CHF accounts, as the old schema
    # allowed on MariaDB
    merchant = merchant_create(name="chf-dups")
    payments = [pay(merchant, amount=1_000 * (i + 1), currency="CHF") for i in range(3)]
    [original] = Account.objects.filter(merchant=None, kind=AccountKind.ACQUIRER_CLEARING)
    lines = list(JournalLine.objects.filter(account=original).order_by("id"))
    assert len(lines) == 3
    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            duplicates = []
            for _ in range(2):
                cursor.execute(
                    "INSERT INTO ledger_account (merchant_id, kind, currency, balance, version) "
                    "VALUES (NULL, 'acquirer_clearing', 'CHF', 0, 1)"
                )
                duplicates.append(cursor.lastrowid)
            for line, account_id in zip(lines[1:], duplicates, strict=True):
                cursor.execute(
                    "UPDATE ledger_journalline SET account_id = %s WHERE id = %s",
                    [account_id, line.pk],
                )
            cursor.execute(
                "SELECT COUNT(*) FROM ledger_account WHERE merchant_id IS NULL "
                "AND kind = 'acquirer_clearing' AND currency = 'CHF'"
            )
            assert cursor.fetchone()[0] == 3
    finally:
        # when
        migrate(latest())
    # then
    [kept] = Account.objects.filter(merchant=None, kind=AccountKind.ACQUIRER_CLEARING)
    assert (kept.pk, kept.owner) == (original.pk, "platform")
    assert sorted(JournalLine.objects.filter(account=kept).values_list("id", flat=True)) == [
        line.pk for line in lines
    ]
    merges = AuditEntry.objects.filter(event_type="account.merged").order_by("object_id")
    assert [(m.object_id, m.actor_id, m.new_values) for m in merges] == [
        (
            str(account_id),
            "migration:ledger.0002",
            {"merged_into": kept.pk, "moved_lines": [line.pk]},
        )
        for account_id, line in zip(duplicates, lines[1:], strict=True)
    ]
    assert ledger_check_invariants().ok
    assert merchant_balances(merchant)["CHF"]["pending"] == sum(p.amount for p in payments)
    assert verify_all().ok


def test_the_invariant_check_reports_duplicate_platform_accounts():
    merchant = merchant_create(name="dup-report")
    pay(merchant, amount=700, currency="CHF")
    with connection.cursor() as cursor:
        # The unique index refuses a second row now; the check must still see one that
        # got in (restored from an old backup, written by hand).
        cursor.execute("ALTER TABLE ledger_account DROP INDEX account_unique_per_owner_mode")
        try:
            cursor.execute(
                "INSERT INTO ledger_account (merchant_id, owner, livemode, kind, currency, "
                "balance, version) VALUES (NULL, 'platform', 0, 'acquirer_clearing', 'CHF', 0, 1)"
            )
            report = ledger_check_invariants()
            cursor.execute("DELETE FROM ledger_account WHERE id = %s", [cursor.lastrowid])
        finally:
            cursor.execute(
                "ALTER TABLE ledger_account ADD CONSTRAINT account_unique_per_owner_mode "
                "UNIQUE (owner, livemode, kind, currency)"
            )
    assert report.problems == [
        "2 platform acquirer_clearing accounts in CHF (test mode; there must be one)"
    ]
