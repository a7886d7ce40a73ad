"""Every ledger change writes its audit row, in the same transaction, naming its actor."""

import pytest
from django.db import connection

from audit.chain import lane_for
from audit.models import AuditEntry, LaneHead
from audit.services import MissingActor
from ledger.models import Transaction
from ledger.services.payments import payment_capture
from ledger.services.refunds import refund_create
from payflow.platform import context, db
from payflow.platform.guards import UnsanctionedWrite
from tests.ledger.conftest import pay


def entries_of(obj):
    return list(
        AuditEntry.objects.filter(object_id=str(obj.pk))
        .order_by("seq")
        .values_list("event_type", "action", "actor_type", "actor_id")
    )


def test_a_payment_writes_exactly_its_audit_rows_with_the_actor(merchant):
    with context.bind(**context.system_actor("clerk-7"), ip="10.0.0.1", request_id="r-1"):
        payment = pay(merchant, amount=2500, capture=False)
        payment = payment_capture(payment=payment)
    assert entries_of(payment) == [
        ("payment.created", "insert", "system", "clerk-7"),
        ("payment.authorized", "update", "system", "clerk-7"),
        ("payment.captured", "update", "system", "clerk-7"),
    ]
    captured = AuditEntry.objects.get(object_id=str(payment.pk), event_type="payment.captured")
    assert (captured.old_values["status"], captured.new_values["status"]) == (
        "authorized",
        "captured",
    )
    assert (captured.ip, captured.request_id) == ("10.0.0.1", "r-1")
    assert captured.lane == lane_for("ledger.transaction", str(payment.pk))


def test_one_objects_history_is_one_lane_with_contiguous_seqs(merchant):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=100)
    refund_create(payment=payment, amount=200)
    rows = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("seq")
    assert len({row.lane for row in rows}) == 1
    lane = rows[0].lane
    seqs = list(AuditEntry.objects.filter(lane=lane).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    head = LaneHead.objects.get(lane=lane)
    last = AuditEntry.objects.filter(lane=lane).order_by("-seq").first()
    assert (head.seq, head.hash) == (last.seq, last.hash)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_operation_leaves_no_audit_row(merchant):
    payment = pay(merchant, capture=False)
    before = AuditEntry.objects.count()

    @db.atomic
    def capture_then_fail():
        payment_capture(payment=payment)
        raise RuntimeError("later step failed")

    with pytest.raises(RuntimeError):
        capture_then_fail()
    assert AuditEntry.objects.count() == before
    assert not AuditEntry.objects.filter(event_type="payment.captured").exists()


def test_a_money_change_without_an_actor_is_refused_and_nothing_changes(merchant):
    payment = pay(merchant, capture=False)
    with context.replaced(context.AuditContext()), pytest.raises(MissingActor):
        payment_capture(payment=payment)
    assert Transaction.objects.get(pk=payment.pk).status == "authorized"
    assert not AuditEntry.objects.filter(event_type="payment.captured").exists()


def test_the_card_token_audit_rows_hold_no_secret(merchant):
    payment = pay(merchant)
    row = AuditEntry.objects.get(event_type="card_token.created")
    assert row.object_id == str(payment.card_token_id)
    assert set(row.new_values) == {
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


@pytest.mark.parametrize(
    "write",
    [
        lambda: AuditEntry.objects.update(reason="x"),
        lambda: AuditEntry.objects.all().delete(),
        lambda: AuditEntry.objects.bulk_update([], ["reason"]),
    ],
    ids=["update", "delete", "bulk-update"],
)
def test_bulk_queryset_writes_on_audit_rows_fail_loudly(merchant, write):
    pay(merchant)
    with pytest.raises(UnsanctionedWrite):
        write()


def test_saving_or_deleting_an_audit_row_fails(merchant):
    pay(merchant)
    row = AuditEntry.objects.first()
    row.reason = "edited"
    with pytest.raises(UnsanctionedWrite):
        row.save()
    with pytest.raises(UnsanctionedWrite):
        row.delete()


@pytest.mark.django_db(transaction=True)
def test_raw_update_and_delete_on_the_audit_table_fail_in_mariadb(merchant):
    from django.db import DatabaseError

    pay(merchant)
    row = AuditEntry.objects.first()
    with connection.cursor() as cursor:
        with pytest.raises(DatabaseError, match="audit rows are immutable"):
            cursor.execute("UPDATE audit_auditentry SET reason = 'x' WHERE id = %s", [row.id])
        with pytest.raises(DatabaseError, match="verified archive segment"):
            cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [row.id])
    assert AuditEntry.objects.get(pk=row.pk).reason == ""
