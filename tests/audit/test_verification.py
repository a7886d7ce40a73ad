"""Verification names the lane, the seq and the kind of every tampering.

The tampering is done with raw SQL after dropping the triggers, as an attacker with DBA
rights would. Each test restores the triggers.
"""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import canonical_bytes, entry_hash, row_fields
from audit.models import AuditEntry
from audit.verify import verify_all, verify_lane
from ledger.services.refunds import refund_create
from tests.audit.conftest import raw, recompute_chain_after_edit, triggers_dropped
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def history(merchant):
    """A payment with several changes: one lane with at least 6 rows of its history."""
    payment = pay(merchant, amount=9000)
    for amount in (100, 200, 300):
        refund_create(payment=payment, amount=amount)
    rows = list(AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("seq"))
    assert len(rows) >= 6
    return rows


def lane_rows(lane):
    return list(AuditEntry.objects.filter(lane=lane).order_by("seq"))


def test_an_untouched_trail_verifies_and_the_command_exits_zero(history, capsys):
    report = verify_all()
    assert report.ok
    assert report.rows == AuditEntry.objects.count()
    call_command("audit_verify")
    assert "audit chain OK" in capsys.readouterr().out


def test_changing_one_field_is_reported_as_row_altered_at_its_seq(history, capsys):
    target = history[2]
    new_values = dict(target.new_values, amount=1)
    with triggers_dropped():
        raw(
            "UPDATE audit_auditentry SET new_values = %s WHERE id = %s",
            [json.dumps(new_values), target.id],
        )
    result = verify_lane(target.lane)
    assert (result.break_kind, result.break_seq) == ("row_altered", target.seq)
    with pytest.raises(CommandError, match="broken in 1 lane"):
        call_command("audit_verify")
    out = capsys.readouterr().out
    assert f"lane {target.lane:>3}: BREAK at seq {target.seq}: row_altered" in out


def test_deleting_a_row_is_reported_as_row_missing(history):
    target = history[3]
    with triggers_dropped():
        raw("DELETE FROM audit_auditentry WHERE id = %s", [target.id])
    result = verify_lane(target.lane)
    assert (result.break_kind, result.break_seq) == ("row_missing", target.seq)


def test_inserting_a_forged_row_is_reported_as_inserted(history):
    # the attacker makes room at seq k by renumbering the rows after it, then inserts a
    # self-consistent forged row that links to row k-1
    target = history[2]
    lane, k = target.lane, target.seq
    previous = AuditEntry.objects.get(lane=lane, seq=k - 1)
    with triggers_dropped():
        for row in reversed(lane_rows(lane)):
            if row.seq >= k:
                raw("UPDATE audit_auditentry SET seq = seq + 1 WHERE id = %s", [row.id])
        forged = row_fields(target)
        forged.update(seq=k, event_type="payment.refunded", reason="forged")
        digest = entry_hash(previous.hash, canonical_bytes(forged))
        raw(
            "INSERT INTO audit_auditentry (lane, seq, prev_hash, hash, encoding_version, "
            "object_type, object_id, action, event_type, old_values, new_values, actor_type, "
            "actor_id, actor_label, ip, user_agent, request_id, task_id, reason, created_at) "
            "VALUES (%s,%s,%s,%s,1,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [
                lane,
                k,
                previous.hash,
                digest,
                forged["object_type"],
                forged["object_id"],
                forged["action"],
                forged["event_type"],
                json.dumps(forged["old_values"]),
                json.dumps(forged["new_values"]),
                forged["actor_type"],
                forged["actor_id"],
                forged["actor_label"],
                forged["ip"],
                forged["user_agent"],
                forged["request_id"],
                forged["task_id"],
                forged["reason"],
                forged["created_at"],
            ],
        )
    result = verify_lane(lane)
    assert (result.break_kind, result.break_seq) == ("row_inserted_or_reordered", k + 1)
    assert f"written as seq {k}" in result.detail


def test_swapping_two_rows_is_reported_as_reordered(history):
    first, second = history[2], history[3]
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET seq = 0 WHERE id = %s", [first.id])
        raw("UPDATE audit_auditentry SET seq = %s WHERE id = %s", [first.seq, second.id])
        raw("UPDATE audit_auditentry SET seq = %s WHERE id = %s", [second.seq, first.id])
    result = verify_lane(first.lane)
    assert (result.break_kind, result.break_seq) == ("row_inserted_or_reordered", first.seq)


def test_a_chain_recomputed_after_an_edit_passes_alone_but_not_against_a_checkpoint(history):
    lane = history[0].lane
    signed_heads = {row.seq: row.hash for row in lane_rows(lane)}  # what a checkpoint signed
    # the attacker edits a row and recomputes every hash after it (and the lane head)
    target = history[1]
    recompute_chain_after_edit(target, {"amount": 1})
    assert verify_lane(lane).ok  # a hash chain alone can be rewritten by its owner...
    result = verify_lane(lane, anchors=signed_heads)  # ...but not the signed heads
    assert (result.break_kind, result.break_seq) == ("checkpoint_mismatch", target.seq)
