"""Domain signals fire inside the transaction; nothing changes money around the services."""

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEntry
from ledger.events import EventType
from ledger.models import JournalLine, Merchant, Transaction
from ledger.services.merchants import merchant_create
from ledger.services.transitions import row_compare_and_set
from ledger.signals import SignalOutsideTransaction, insert_audited, ledger_changed
from payflow.platform import context, db
from payflow.platform.guards import UnsanctionedWrite
from tests.ledger.conftest import pay


@pytest.mark.django_db(transaction=True)
def test_a_payment_lifecycle_signals_each_change_from_inside_its_transaction(merchant, recorded):
    payment = pay(merchant, amount=2_500)
    assert [e["event_type"] for e in recorded] == [
        "card_token.created",
        "payment.created",
        "payment.authorized",
        "payment.captured",
        "journal_entry.posted",
    ]
    assert all(e["in_transaction"] for e in recorded)
    captured = recorded[3]
    assert captured["action"] == "update"
    assert (captured["old"]["status"], captured["new"]["status"]) == ("authorized", "captured")
    assert (captured["old"]["version"], captured["new"]["version"]) == (2, 3)
    assert captured["new"]["id"] == str(payment.pk)
    lines = recorded[4]["new"]["lines"]
    assert sorted(line["amount"] for line in lines) == [-2_500, 2_500]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_leaves_nothing_behind_not_even_what_receivers_wrote(recorded):
    def write_in_receiver(sender, instance, **kwargs):
        Group.objects.create(name=f"record-of-{instance.pk}")

    ledger_changed.connect(write_in_receiver, dispatch_uid="test-writer")

    @db.atomic
    def create_then_fail():
        merchant_create(name="Doomed")
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError):
            create_then_fail()
    finally:
        ledger_changed.disconnect(dispatch_uid="test-writer")
    assert [e["event_type"] for e in recorded] == ["merchant.created"]
    assert not Merchant.objects.filter(name="Doomed").exists()
    assert not Group.objects.exists()


@pytest.mark.django_db
def test_a_receiver_that_fails_aborts_the_change():
    def failing(sender, **kwargs):
        raise RuntimeError("audit store unavailable")

    ledger_changed.connect(failing, dispatch_uid="test-failing")
    try:
        with pytest.raises(RuntimeError, match="audit store unavailable"):
            merchant_create(name="Never")
    finally:
        ledger_changed.disconnect(dispatch_uid="test-failing")
    assert not Merchant.objects.filter(name="Never").exists()


@pytest.mark.django_db(transaction=True)
def test_an_audited_write_outside_a_transaction_is_refused_and_writes_nothing(merchant, recorded):
    # given: no transaction open (its entry would be staged for a COMMIT that never comes)
    entries = AuditEntry.objects.count()
    latest = merchant.audit_hash
    with context.replaced(context.AuditContext(**context.system_actor("test:outside"))):
        # when: an insert and a compare-and-set are attempted outside any transaction
        with pytest.raises(SignalOutsideTransaction, match="inside a transaction"):
            insert_audited(Merchant(name="Outside"), event_type=EventType.MERCHANT_CREATED)
        read = Merchant.objects.get(pk=merchant.pk)
        with pytest.raises(SignalOutsideTransaction, match="inside a transaction"):
            row_compare_and_set(read, event_type=EventType.MERCHANT_SUSPENDED, status="suspended")
    # then: no row, no change, no entry, no signal; the instance is left as it was read
    assert (read.status, read.version) == (merchant.status, merchant.version)
    assert not Merchant.objects.filter(name="Outside").exists()
    stored = Merchant.objects.get(pk=merchant.pk)
    assert (stored.status, stored.version, stored.audit_hash) == (
        merchant.status,
        merchant.version,
        latest,
    )
    assert AuditEntry.objects.count() == entries
    assert recorded == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "write",
    [
        lambda: Transaction.objects.update(status="settled"),
        lambda: Transaction.objects.all().delete(),
        lambda: Transaction.objects.bulk_create([]),
        lambda: Transaction.objects.bulk_update([], ["status"]),
        lambda: Merchant.objects.update(status="suspended"),
        lambda: JournalLine.objects.all().delete(),
        lambda: JournalLine.objects.update(amount=1),
    ],
    ids=[
        "txn-update",
        "txn-delete",
        "txn-bulk-create",
        "txn-bulk-update",
        "merchant-update",
        "line-delete",
        "line-update",
    ],
)
def test_bulk_queryset_writes_on_audited_models_fail_loudly(merchant, write):
    pay(merchant)
    with pytest.raises(UnsanctionedWrite, match="bypasses the audit trail"):
        write()
    assert Transaction.objects.get().status == "captured"


@pytest.mark.django_db
def test_saving_or_deleting_an_existing_row_outside_the_services_fails(merchant):
    payment = pay(merchant)
    payment.status = "settled"
    with pytest.raises(UnsanctionedWrite):
        payment.save()
    with pytest.raises(UnsanctionedWrite):
        payment.delete()
    assert Transaction.objects.get(pk=payment.pk).status == "captured"
