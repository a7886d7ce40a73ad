"""Signed checkpoints: written by the job, verified with the public key, anchoring the chain."""

import json

import pytest
from django.conf import settings

from audit import signing
from audit.checkpoints import audit_checkpoint_create
from audit.models import AuditCheckpoint, AuditEntry
from audit.verify import verify_all
from ledger.services.refunds import refund_create
from tests.audit.conftest import recompute_chain_after_edit
from tests.ledger.conftest import pay


def public_key():
    return signing.public_key_from_seed(settings.AUDIT_SIGNING_KEY)


def test_a_checkpoint_signs_every_lane_head_and_the_new_entries(merchant):
    pay(merchant)
    checkpoint = audit_checkpoint_create()
    assert checkpoint.number == 1
    assert signing.verify_checkpoint(checkpoint.signed, public_key())
    body = checkpoint.signed["body"]
    assert len(body["lanes"]) == settings.AUDIT_LANES
    assert body["tree"]["size"] == AuditEntry.objects.count() == checkpoint.tree_size
    assert body["previous"] is None
    assert "AUDIT_SIGNING_KEY" not in json.dumps(checkpoint.signed)


def test_the_next_checkpoint_extends_the_previous_and_covers_only_new_entries(merchant):
    payment = pay(merchant)
    first = audit_checkpoint_create()
    refund_create(payment=payment, amount=100)
    second = audit_checkpoint_create()
    assert second.number == 2
    assert second.signed["body"]["previous"] == first.digest
    assert signing.verify_extends(first.signed["body"], second.signed["body"])
    assert second.tree_size == AuditEntry.objects.count() - first.tree_size


def test_the_job_writes_nothing_when_nothing_changed_and_is_safe_to_run_twice(merchant):
    pay(merchant)
    assert audit_checkpoint_create() is not None
    assert audit_checkpoint_create() is None
    assert AuditCheckpoint.objects.count() == 1


def test_a_checkpoint_signed_with_another_key_does_not_verify(merchant):
    pay(merchant)
    checkpoint = audit_checkpoint_create()
    other = signing.public_key_from_seed(bytes(range(32)))
    assert not signing.verify_checkpoint(checkpoint.signed, other)


@pytest.mark.django_db(transaction=True)
def test_recomputing_the_whole_chain_after_an_edit_is_caught_by_the_signed_checkpoint(merchant):
    # given a history covered by a signed checkpoint
    payment = pay(merchant, amount=9000)
    refund_create(payment=payment, amount=100)
    audit_checkpoint_create()
    target = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("seq")[1]
    lane = target.lane
    # when an attacker with DBA rights edits a row and recomputes every later hash and the head
    recompute_chain_after_edit(target, {"amount": 1})
    # then verification, which checks the signed heads, names the lane and the kind
    report = verify_all()
    [broken] = report.breaks
    assert (broken.lane, broken.break_kind) == (lane, "checkpoint_mismatch")


@pytest.mark.django_db(transaction=True)
def test_signed_checkpoints_cannot_be_deleted_or_changed_in_mariadb(merchant):
    """Issue 15: ``DELETE FROM audit_auditcheckpoint`` had no trigger, so a DBA who re-hashed
    an edited lane could delete the checkpoints that anchored it, and verification passed."""
    from django.db import DatabaseError, connection

    payment = pay(merchant, amount=9000)
    refund_create(payment=payment, amount=100)
    audit_checkpoint_create()
    target = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("seq")[1]
    recompute_chain_after_edit(target, {"amount": 1})  # entry triggers dropped, as a DBA would
    with connection.cursor() as cursor:
        with pytest.raises(DatabaseError, match="signed audit records are immutable"):
            cursor.execute("DELETE FROM audit_auditcheckpoint")
        with pytest.raises(DatabaseError, match="signed audit records are immutable"):
            cursor.execute("UPDATE audit_auditcheckpoint SET tree_size = 0")
        cursor.execute(
            "SELECT event_object_table, event_manipulation FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE() AND event_object_table = 'audit_retentionpurge'"
        )
        assert sorted(event for _, event in cursor.fetchall()) == ["DELETE", "UPDATE"]
    assert AuditCheckpoint.objects.count() == 1
    report = verify_all()
    assert not report.ok
    assert {b.break_kind for b in report.breaks} == {"checkpoint_mismatch"}
