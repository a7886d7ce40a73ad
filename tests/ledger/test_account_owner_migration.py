"""Migration ledger 0002 on MariaDB: platform accounts get an ``owner`` under a plain unique
index. Duplicate platform accounts (as the old schema let concurrent first payments create
them) were merged by the release that shipped it (commit 0233949), recording each merge in
the lane-based audit trail; that code is gone with the lanes, so on a database that still
has duplicates the migration now refuses, naming the release to migrate with first."""

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor

from ledger.models import Account, AccountKind, JournalLine
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.merchants import merchant_create
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("ledger", "0001_initial")]
REFUSAL = (
    r"duplicate platform accounts \[\('acquirer_clearing', 'CHF'\)\] must be merged by this "
    r"migration as PayFlow commit 0233949 shipped it \(its audit trail code is gone\): "
    r"migrate to ledger 0002 with that release first, then upgrade"
)


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def applied(migration):
    return migration in MigrationExecutor(connection).loader.applied_migrations


def sql(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else cursor.lastrowid


def has_owner_column():
    return bool(sql("SHOW COLUMNS FROM ledger_account LIKE 'owner'"))


def platform_chf_clearing():
    return [
        row[0]
        for row in sql(
            "SELECT id FROM ledger_account WHERE merchant_id IS NULL "
            "AND kind = 'acquirer_clearing' AND currency = 'CHF' ORDER BY id"
        )
    ]


def lines_by_account(line_ids):
    placeholders = ", ".join(["%s"] * len(line_ids))
    return dict(
        sql(
            f"SELECT id, account_id FROM ledger_journalline WHERE id IN ({placeholders})",  # noqa: S608
            line_ids,
        )
    )


def booked_on_three_clearing_accounts():
    """Payments booked on three acquirer_clearing CHF accounts, as the old schema allowed on
    MariaDB: at ledger 0001, two duplicates inserted and a line moved onto each. Returns
    (merchant, payments, the original account, the lines, the duplicates' ids)."""
    merchant = merchant_create(name="chf-dups")
    payments = [pay(merchant, amount=1_000 * (i + 1), currency="CHF") for i in range(3)]
    [original] = Account.objects.filter(merchant=None, kind=AccountKind.ACQUIRER_CLEARING)
    lines = list(JournalLine.objects.filter(account=original).order_by("id"))
    assert len(lines) == 3
    migrate(BEFORE)
    duplicates = []
    for line in lines[1:]:
        account_id = sql(
            "INSERT INTO ledger_account (merchant_id, kind, currency, balance, version) "
            "VALUES (NULL, 'acquirer_clearing', 'CHF', 0, 1)"
        )
        duplicates.append(account_id)
        sql("UPDATE ledger_journalline SET account_id = %s WHERE id = %s", [account_id, line.pk])
    assert platform_chf_clearing() == [original.pk, *duplicates]
    return merchant, payments, original, lines, duplicates


def merge_by_hand(original, duplicates):
    """What the merging release did to the data: the duplicates' lines onto the oldest
    account, the duplicates deleted."""
    for account_id in duplicates:
        sql(
            "UPDATE ledger_journalline SET account_id = %s WHERE account_id = %s",
            [original.pk, account_id],
        )
        sql("DELETE FROM ledger_account WHERE id = %s", [account_id])


def back_to_latest(original, duplicates):
    """Leave the schema at the latest migrations whatever a test left behind."""
    if applied(("ledger", "0002_account_owner")):
        return
    merge_by_hand(original, duplicates)
    if has_owner_column():  # only if a refusal left the schema half-changed (a failure)
        sql("ALTER TABLE ledger_account DROP COLUMN owner")
    migrate(latest())


def test_duplicate_platform_accounts_are_refused_naming_the_release_that_merges_them():
    merchant, payments, original, lines, duplicates = booked_on_three_clearing_accounts()
    try:
        # when
        with pytest.raises(RuntimeError, match=REFUSAL):
            migrate(latest())
        # then: the migration is not recorded and the ledger's data is as it was: every
        # duplicate still there, every line still on the account it was booked on
        assert not applied(("ledger", "0002_account_owner"))
        assert not has_owner_column(), "a refused run must leave the schema as it was"
        assert platform_chf_clearing() == [original.pk, *duplicates]
        assert lines_by_account([line.pk for line in lines]) == {
            lines[0].pk: original.pk,
            **{line.pk: account for line, account in zip(lines[1:], duplicates, strict=True)},
        }
    finally:
        back_to_latest(original, duplicates)
    assert ledger_check_invariants().ok
    assert merchant_balances(merchant)["CHF"]["pending"] == sum(p.amount for p in payments)


def test_once_the_duplicates_are_merged_the_refused_migration_runs():
    # given: the refusal, then the duplicates merged (as the release that merged did)
    merchant, payments, original, lines, duplicates = booked_on_three_clearing_accounts()
    try:
        with pytest.raises(RuntimeError, match=REFUSAL):
            migrate(latest())
        merge_by_hand(original, duplicates)
        # when: the upgrade is run again; then it completes (the refusal changed nothing
        # that stops a second run)
        migrate(latest())
    finally:
        back_to_latest(original, duplicates)
    assert Account.objects.get(pk=original.pk).owner == "platform"
    assert sorted(JournalLine.objects.filter(account=original).values_list("id", flat=True)) == [
        line.pk for line in lines
    ]
    assert ledger_check_invariants().ok
    assert merchant_balances(merchant)["CHF"]["pending"] == sum(p.amount for p in payments)


def test_without_duplicates_every_account_gets_its_owner_and_platform_accounts_stay_unique():
    # given: a ledger booked at ledger 0001 with one platform account per kind and currency
    merchant = merchant_create(name="no-dups")
    payments = [pay(merchant, amount=1_500 * (i + 1), currency="CHF") for i in range(2)]
    accounts = {
        pk: (merchant_id, kind, currency)
        for pk, merchant_id, kind, currency in Account.objects.values_list(
            "pk", "merchant_id", "kind", "currency"
        )
    }
    lines = dict(JournalLine.objects.values_list("pk", "account_id"))
    migrate(BEFORE)
    try:
        assert not has_owner_column()
        # when
        migrate(latest())
    finally:
        if not applied(("ledger", "0002_account_owner")):
            migrate(latest())
    # then: nothing merged or moved, every account owned by its merchant or the platform
    assert {
        pk: (merchant_id, kind, currency)
        for pk, merchant_id, kind, currency in Account.objects.values_list(
            "pk", "merchant_id", "kind", "currency"
        )
    } == accounts
    assert dict(JournalLine.objects.values_list("pk", "account_id")) == lines
    for account in Account.objects.all():
        expected = "platform" if account.merchant_id is None else str(account.merchant_id)
        assert account.owner == expected, account
    assert ledger_check_invariants().ok
    assert merchant_balances(merchant)["CHF"]["pending"] == sum(p.amount for p in payments)
    # and the new unique index refuses a second platform account of a kind and currency
    with pytest.raises(IntegrityError):
        sql(
            "INSERT INTO ledger_account (merchant_id, owner, livemode, kind, currency, balance, "
            "version) VALUES (NULL, 'platform', 0, 'acquirer_clearing', 'CHF', 0, 1)"
        )


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
