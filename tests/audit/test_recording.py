"""Every ledger change writes its audit entry, in the same transaction, naming its actor,
chained per object, with no shared row (issue 15)."""

import re

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from audit.services import MissingActor
from ledger.models import CardToken, Transaction
from ledger.services.payments import payment_capture
from ledger.services.refunds import refund_create
from payflow.platform import context, trail
from payflow.platform.guards import UnsanctionedWrite
from tests.ledger.conftest import pay


def entries_of(obj):
    return list(
        AuditEntry.objects.filter(object_id=str(obj.pk))
        .order_by("id")
        .values_list("event_type", "action", "actor_type", "actor_id")
    )


def test_a_payment_writes_exactly_its_audit_entries_with_the_actor(merchant):
    with context.bind(**context.system_actor("clerk-7"), ip="10.0.0.1", request_id="r-1"):
        payment = pay(merchant, amount=2500, capture=False)
        payment = payment_capture(payment=payment)
    assert entries_of(payment) == [
        ("payment.created", "insert", "system", "clerk-7"),
        ("payment.authorized", "update", "system", "clerk-7"),
        ("payment.captured", "update", "system", "clerk-7"),
    ]
    captured = AuditEntry.objects.get(object_id=str(payment.pk), event_type="payment.captured")
    fields = captured.fields
    assert (fields["old"]["status"], fields["new"]["status"]) == ("authorized", "captured")
    assert fields["new"]["amount"] == "2500"  # integers are strings in the canonical bytes
    assert (fields["ip"], fields["request_id"], captured.request_id) == ("10.0.0.1", "r-1", "r-1")
    assert fields["v"] == "2"


def test_one_objects_entries_form_its_own_chain_and_the_row_names_the_latest(merchant):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=100)
    refund_create(payment=payment, amount=200)
    entries = list(AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id"))
    previous = trail.GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == previous
        assert trail.entry_hash(entry.prev_hash, bytes(entry.body)) == entry.hash
        previous = entry.hash
    assert Transaction.objects.get(pk=payment.pk).audit_hash == entries[-1].hash
    assert entries[-1].fields["new"] == trail.canonical_values(
        Transaction.objects.get(pk=payment.pk).snapshot()
    )


def test_a_payment_takes_no_shared_lock_and_inserts_its_entries_in_one_statement(merchant):
    """Issue 15: the lane heads cost 4 SELECT … FOR UPDATE and 4 UPDATEs per payment."""
    from ledger.services.merchants import merchant_reactivate, merchant_suspend
    from payflow.platform import db

    pay(merchant)  # the accounts exist: what follows is a steady-state payment
    before = AuditEntry.objects.count()
    with CaptureQueriesContext(connection) as queries:
        pay(merchant, amount=1234)
    statements = [query["sql"] for query in queries.captured_queries]

    @db.atomic
    def three_changes():  # one transaction, three audited changes
        merchant_suspend(merchant=merchant)
        merchant_reactivate(merchant=merchant)
        merchant_suspend(merchant=merchant)

    written = AuditEntry.objects.count()
    with CaptureQueriesContext(connection) as one_transaction:
        three_changes()
    inserts = [
        query["sql"]
        for query in one_transaction.captured_queries
        if query["sql"].startswith("INSERT INTO `audit_auditentry`")
    ]
    assert AuditEntry.objects.count() - written == 3
    assert len(inserts) == 1
    assert inserts[0].count("), (") == 2  # one INSERT of three rows
    assert written - before >= 4
    locking = [sql for sql in statements if "FOR UPDATE" in sql]
    for sql in locking:  # only the payment's own row, in its read-then-CAS
        assert re.search(r"FROM `ledger_transaction`", sql), sql
    assert not [sql for sql in statements if "audit_lanehead" in sql]
    assert not [sql for sql in statements if sql.startswith("UPDATE `audit_")]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_operation_leaves_no_audit_entry(merchant):
    from payflow.platform import db

    payment = pay(merchant, capture=False)
    before = AuditEntry.objects.count()

    @db.atomic
    def capture_then_fail():
        payment_capture(payment=payment)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        capture_then_fail()
    assert AuditEntry.objects.count() == before
    assert Transaction.objects.get(pk=payment.pk).status == "authorized"


def test_a_money_change_without_an_actor_is_refused_and_nothing_changes(merchant):
    payment = pay(merchant, capture=False)
    with context.replaced(context.AuditContext()), pytest.raises(MissingActor):
        payment_capture(payment=payment)
    assert Transaction.objects.get(pk=payment.pk).status == "authorized"
    assert not AuditEntry.objects.filter(event_type="payment.captured").exists()


def test_the_card_token_audit_entries_hold_no_secret(merchant):
    payment = pay(merchant)
    entry = AuditEntry.objects.get(event_type="card_token.created")
    assert entry.object_id == str(payment.card_token_id)
    assert set(entry.fields["new"]) == {
        "id",
        "merchant",
        "livemode",
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "fingerprint",
        "key_version",
        "version",
    }
    token = CardToken.objects.get(pk=payment.card_token_id)
    assert token.audit_hash == entry.hash
    assert bytes(token.ciphertext) not in bytes(entry.body)


@pytest.mark.parametrize(
    "write",
    [
        lambda: AuditEntry.objects.update(request_id="x"),
        lambda: AuditEntry.objects.all().delete(),
        lambda: AuditEntry.objects.bulk_update([], ["request_id"]),
    ],
    ids=["update", "delete", "bulk-update"],
)
def test_bulk_queryset_writes_on_audit_entries_fail_loudly(merchant, write):
    pay(merchant)
    with pytest.raises(UnsanctionedWrite):
        write()


def test_saving_or_deleting_an_audit_entry_fails(merchant):
    pay(merchant)
    entry = AuditEntry.objects.first()
    entry.request_id = "edited"
    with pytest.raises(UnsanctionedWrite):
        entry.save()
    with pytest.raises(UnsanctionedWrite):
        entry.delete()


@pytest.mark.django_db(transaction=True)
def test_raw_update_and_delete_of_entries_and_the_log_fail_in_mariadb(merchant):
    from tests.audit.conftest import sequence

    pay(merchant)
    sequence()
    entry = AuditEntry.objects.first()
    with connection.cursor() as cursor:
        with pytest.raises(DatabaseError, match="immutable"):
            cursor.execute("UPDATE audit_auditentry SET request_id = 'x' WHERE id = %s", [entry.id])
        with pytest.raises(DatabaseError, match="verified archive segment"):
            cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [entry.id])
        columns = {"audit_logleaf": "entry_id", "audit_lognode": "hash", "audit_checkpoint": "root"}
        for table, column in columns.items():
            with pytest.raises(DatabaseError, match="immutable"):
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            with pytest.raises(DatabaseError, match="immutable"):
                cursor.execute(f"UPDATE {table} SET {column} = {column}")  # noqa: S608
    assert AuditEntry.objects.get(pk=entry.pk).request_id == ""


def test_a_second_entry_chained_to_the_same_previous_entry_is_refused(merchant):
    """The unique (object, prev_hash): an object's chain cannot fork, whatever wrote it."""
    from django.db import IntegrityError, transaction

    payment = pay(merchant)
    first = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id")[1]
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.create(
            prev_hash=first.prev_hash,
            hash="f" * 64,
            body=bytes(first.body),
            object_type=first.object_type,
            object_id=first.object_id,
            action=first.action,
            event_type=first.event_type,
            actor_type=first.actor_type,
            actor_id=first.actor_id,
            created_at=first.created_at,
        )
