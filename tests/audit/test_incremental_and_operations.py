"""Every ledger operation writes exactly its audit entries; verification runs (in full and
incremental, from the command and as recorded runs); the sequencer's checkpoints."""

import datetime

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit import tlog
from audit.models import AuditEntry, Checkpoint, LogLeaf, VerificationRun
from audit.objects import public_id
from audit.report import Break, VerificationReport
from audit.runs import incremental_start, verification_execute
from audit.sequencer import log_size
from audit.verify import verify_log
from ledger.services.api_keys import api_key_create, api_key_revoke
from ledger.services.merchants import merchant_reactivate, merchant_suspend
from ledger.services.payments import payment_cancel
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from tests.audit.conftest import edit_entry, raw, sequence, triggers_dropped
from tests.ledger.conftest import pay


def new_events(operation):
    before = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    operation()
    return list(
        AuditEntry.objects.filter(id__gt=before).order_by("id").values_list("event_type", flat=True)
    )


def run(**fields):
    """A recorded verification run, executed here (what the worker does)."""
    return verification_execute(run_id=VerificationRun.objects.create(started_by="t", **fields).id)


def test_every_ledger_operation_writes_exactly_its_audit_entries(merchant):
    later = timezone.now() + datetime.timedelta(days=5)
    assert new_events(lambda: pay(merchant, capture=False)) == [
        "card_token.created",
        "payment.created",
        "payment.authorized",
    ]
    authorized = pay(merchant, capture=False)
    assert new_events(lambda: payment_cancel(payment=authorized)) == [
        "payment.cancelled",
        "acquirer_command.created",
        "acquirer_command.succeeded",
    ]
    assert new_events(lambda: pay(merchant, number="4000000000000002")) == [
        "card_token.created",
        "payment.created",
        "payment.failed",
    ]
    captured = pay(merchant, amount=10_000)
    assert new_events(lambda: refund_create(payment=captured, amount=500)) == [
        "payment.partially_refunded",
        "refund.created",
        "journal_entry.posted",
        "acquirer_command.created",
        "acquirer_command.succeeded",
        "refund.succeeded",
    ]
    assert new_events(lambda: chargeback_create(payment=captured, amount=300, reason="fraud")) == [
        "payment.charged_back",
        "chargeback.created",
        "journal_entry.posted",
        "chargeback.settled",
    ]
    assert new_events(lambda: settlement_run(now=later)) == [
        "payment.settled",
        "journal_entry.posted",
    ]
    assert new_events(lambda: payout_create(merchant=merchant, amount=1000, currency="EUR")) == [
        "payout.created",
        "journal_entry.posted",
        "payout.pending",
    ]
    issued = api_key_create(merchant=merchant)
    assert new_events(lambda: api_key_revoke(api_key=issued.api_key)) == ["api_key.revoked"]
    assert new_events(lambda: merchant_suspend(merchant=merchant)) == ["merchant.suspended"]
    assert new_events(lambda: merchant_reactivate(merchant=merchant)) == ["merchant.reactivated"]
    # and every row those operations left reconciles with its latest entry
    sequence()
    report = verify_log()
    assert report.ok, [b.as_dict() for b in report.breaks]
    assert report.entries == AuditEntry.objects.count()
    assert report.rows_reconciled > 0


# --- the command --------------------------------------------------------------------------


def test_an_untouched_log_verifies_and_the_command_says_so(merchant, capsys):
    payment = pay(merchant, amount=9000)
    refund_create(payment=payment, amount=100)
    sequence()
    report = verify_log()
    assert report.ok
    assert report.entries == report.size == report.checkpoint_size == AuditEntry.objects.count()
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert f"audit log OK: {report.entries} entries, size {report.size}" in out
    assert f"{report.rows_reconciled} rows reconciled" in out
    call_command("audit_verify", "--no-reconcile")
    assert "0 rows reconciled" in capsys.readouterr().out


def test_the_command_runs_incrementally_from_the_last_good_run(merchant, capsys):
    payment = pay(merchant)
    sequence()
    call_command("audit_verify", "--incremental")
    assert "no verified run yet: in full" in capsys.readouterr().out
    verified = run()
    refund_create(payment=payment, amount=100)
    sequence()
    call_command("audit_verify", "--incremental")
    out = capsys.readouterr().out
    assert f"incremental from log size {verified.checkpoint_size}" in out
    assert f"audit log OK: {log_size() - verified.checkpoint_size} entries" in out


@pytest.mark.django_db(transaction=True)
def test_the_command_fails_with_every_break_named(merchant, capsys):
    payment = pay(merchant)
    sequence()
    payment_key = ("ledger.transaction", str(payment.pk))
    target = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id")[1]
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET actor_id = 'mallory' WHERE id = %s", [target.id])
    with pytest.raises(CommandError, match=r"audit log verification failed: 1 breaks"):
        call_command("audit_verify", "--no-reconcile")
    out = capsys.readouterr().out
    index = LogLeaf.objects.get(entry_id=target.id).index
    assert public_id(*payment_key).startswith("pay_")
    assert f"BREAK column_mismatch at index {index}: {public_id(*payment_key)}: " in out


# --- recorded runs ------------------------------------------------------------------------


def test_an_incremental_run_starts_from_the_checkpoint_a_good_run_verified(merchant):
    payment = pay(merchant)
    sequence()
    assert incremental_start() == 0  # nothing verified yet: in full
    full = run()
    assert (full.status, full.ok, full.checkpoint_size) == ("done", True, log_size())
    assert full.rows == full.done == full.total == AuditEntry.objects.count()
    refund_create(payment=payment, amount=100)  # new entries after the verified checkpoint
    sequence()
    assert incremental_start() == full.checkpoint_size
    incremental = run(incremental=True)
    assert incremental.ok
    assert incremental.checkpoint_size == log_size() > full.checkpoint_size
    assert incremental.rows == AuditEntry.objects.count() - full.rows  # only the new entries
    assert incremental_start() == incremental.checkpoint_size


def test_a_broken_run_records_no_checkpoint_and_the_next_incremental_run_starts_before_it(
    merchant,
):
    pay(merchant)
    sequence()
    good = run()
    # a ledger row changed behind the services' back
    raw("UPDATE ledger_merchant SET name = 'renamed' WHERE id = %s", [merchant.pk.hex])
    broken = run()
    assert (broken.ok, broken.checkpoint_size) == (False, None)
    assert [b["kind"] for b in broken.breaks] == ["row_mismatch"]
    assert broken.breaks[0]["object_id"] == str(merchant.pk)
    assert incremental_start() == good.checkpoint_size


@pytest.mark.django_db(transaction=True)
def test_an_incremental_run_still_catches_a_tamper_after_the_verified_checkpoint(merchant):
    payment = pay(merchant)
    sequence()
    run()
    refund = refund_create(payment=payment, amount=100)
    sequence()
    target = AuditEntry.objects.filter(object_id=str(refund.pk)).order_by("id").first()
    edit_entry(target)
    incremental = run(incremental=True)
    assert incremental.ok is False
    index = LogLeaf.objects.get(entry_id=target.id).index
    assert index >= incremental_start()  # inside the range the incremental run covers
    [broken] = incremental.breaks
    assert (broken["kind"], broken["index"]) == ("hash_mismatch", index)
    assert (broken["object_type"], broken["object_id"]) == (target.object_type, str(refund.pk))
    assert broken["public_id"].startswith("re_")


def test_a_run_saves_its_progress_as_it_goes(merchant, monkeypatch):
    from audit import runs, verify
    from tests.audit.chainseed import seed_chain

    now = timezone.now()
    seed_chain(25, start=now - datetime.timedelta(minutes=5), end=now, objects=3)
    sequence()
    monkeypatch.setattr(verify, "CHUNK", 10)
    seen = []
    real = runs.verify_log

    def watched(**kwargs):
        progress = kwargs["progress"]

        def recorded(done, total):
            progress(done, total)
            row = VerificationRun.objects.get()
            seen.append((row.status, row.done, row.total))

        return real(**{**kwargs, "progress": recorded})

    monkeypatch.setattr(runs, "verify_log", watched)
    finished = run()
    size = log_size()
    assert seen == [("running", done, size) for done in (10, 20, size)]
    assert (finished.status, finished.done, finished.percent) == ("done", size, 100)


def test_a_run_that_crashes_is_recorded_as_failed(merchant, monkeypatch):
    from audit import runs

    def crash(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(runs, "verify_log", crash)
    created = VerificationRun.objects.create(started_by="t")
    with pytest.raises(RuntimeError):
        verification_execute(run_id=created.id)
    failed = VerificationRun.objects.get(pk=created.id)
    assert (failed.status, failed.ok, failed.error) == ("failed", None, "the database went away")
    assert failed.finished_at is not None


# --- checkpoints (what the sequencer signs) -----------------------------------------------


def test_the_sequencer_signs_nothing_new_when_nothing_changed(merchant):
    pay(merchant)
    sequence()
    first = Checkpoint.objects.get()
    sequence()  # nothing new: safe to run again
    assert list(Checkpoint.objects.values_list("size", flat=True)) == [first.size]
    refund_create(payment=pay(merchant), amount=1)
    sequence()
    assert Checkpoint.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_signed_with_another_key_is_bad_signature(merchant):
    pay(merchant)
    sequence()
    checkpoint = Checkpoint.objects.get()
    other = tlog.Signer(tlog.generate_signer_key("payflow.test/audit"))
    body = tlog.checkpoint_body(
        "payflow.test/audit", checkpoint.size, bytes.fromhex(checkpoint.root)
    )
    forged = tlog.sign_note(body, other)
    with pytest.raises(tlog.NoteError):
        tlog.verify_note(forged, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    with triggers_dropped():
        raw("UPDATE audit_checkpoint SET note = %s WHERE size = %s", [forged, checkpoint.size])
    report = verify_log(reconcile=False)
    assert [b.kind for b in report.breaks] == ["bad_signature"]


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_whose_stored_size_or_root_differ_from_its_signed_text_is_bad_signature(
    merchant,
):
    pay(merchant)
    sequence()
    checkpoint = Checkpoint.objects.get()
    with triggers_dropped():
        raw("UPDATE audit_checkpoint SET root = %s WHERE size = %s", ["ab" * 32, checkpoint.size])
    assert "bad_signature" in {b.kind for b in verify_log(reconcile=False).breaks}


def test_a_reports_breaks_name_their_public_ids_with_one_query(merchant, django_assert_num_queries):
    # Reproduced (review): each break's public id was a query of its own (up to 200 per
    # report, for the auditors' page, the command and the stored run).
    payments = [pay(merchant, amount=100 + n) for n in range(5)]
    report = VerificationReport()
    for payment in payments:
        report.add(Break("row_mismatch", "ledger.transaction", str(payment.pk), None, "x"))
        report.add(Break("chain_broken", "operator:ledger.transaction", str(payment.pk)))
    report.add(Break("row_mismatch", "ledger.merchant", str(merchant.pk)))
    report.add(Break("unsealed", "", "", 3, "the log"))
    with django_assert_num_queries(1):
        named = report.as_dict()["breaks"]
    expected = [public_id("ledger.transaction", str(payment.pk)) for payment in payments]
    assert [item["public_id"] for item in named[:10:2]] == expected
    assert [item["public_id"] for item in named[1:10:2]] == expected  # operator actions
    assert named[10]["public_id"].startswith("acct_")
    assert named[11]["public_id"] == ""
