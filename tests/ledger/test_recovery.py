"""Recovery of in-flight work by inquiry, on MariaDB (issue 13, item 1).

Before the fix, a payment whose process died during the acquirer call stayed
``initiated`` forever, and nothing ever asked the acquirer about it. Each test leaves
work in flight the way a crash does (``crash_at``: the process "dies" at a fault point,
after the steps before it committed), then runs the recovery job.
"""

import datetime
import threading

import pytest
from django.db import connections

from audit.models import AuditEntry
from ledger import acquirer
from ledger.models import (
    AcquirerCommand,
    JournalEntry,
    SimulatedOperation,
    Transaction,
    TransactionStatus,
)
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.payments import payment_capture
from ledger.services.recovery import in_flight_recover
from ledger.services.refunds import refund_create
from ledger.services.settlement import settlement_run
from outbox.models import OutboxEvent
from payflow.platform import context
from tests.ledger.conftest import SimulatedCrash, crash_at, pay

NOW = datetime.timedelta(0)


def recover():
    with context.replaced(context.AuditContext(**context.system_actor("task:recover"))):
        return in_flight_recover(older_than=NOW)


def crashed_payment(point, merchant, **kwargs):
    with crash_at(point), pytest.raises(SimulatedCrash):
        pay(merchant, **kwargs)
    # the newest payment (ids are time-ordered UUIDv7)
    return Transaction.objects.filter(merchant=merchant, type="payment").order_by("-id").first()


def events(payment):
    return list(
        OutboxEvent.objects.filter(aggregate_id=str(payment.pk))
        .order_by("sequence")
        .values_list("event_type", flat=True)
    )


def test_a_payment_whose_process_died_during_the_call_is_captured_by_inquiry_once(merchant):
    payment = crashed_payment("acquirer.authorize", merchant, amount=4_200)
    # the acquirer decided (and took the money: a sale) before the process died
    assert SimulatedOperation.objects.get(pk=str(payment.pk)).captured_amount == 4_200
    report = recover()
    assert (report.payments_resolved, report.payments_unresolved) == (1, 0)
    payment.refresh_from_db()
    assert (payment.status, payment.captured_amount) == ("captured", 4_200)
    assert JournalEntry.objects.filter(transaction=payment, kind="capture").count() == 1
    assert SimulatedOperation.objects.filter(authorization=str(payment.pk)).count() == 1
    assert events(payment) == ["payment.created", "payment.authorized", "payment.captured"]
    actors = AuditEntry.objects.filter(object_id=str(payment.pk)).values_list(
        "event_type", "actor_id"
    )
    assert list(actors.order_by("id"))[1:] == [
        ("payment.authorized", "task:recover"),
        ("payment.captured", "task:recover"),
    ]
    assert merchant_balances(merchant)["EUR"]["pending"] == 4_200
    assert ledger_check_invariants().ok
    # a second run finds nothing to do
    assert recover().payments_resolved == 0


def test_a_payment_the_acquirer_never_received_is_failed_and_reversed(merchant):
    payment = crashed_payment("payment.intent_committed", merchant)
    assert not SimulatedOperation.objects.filter(pk=str(payment.pk)).exists()
    recover()
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code) == ("failed", "acquirer_unavailable")
    [void] = AcquirerCommand.objects.filter(transaction=payment)
    assert (void.kind, void.status) == ("void", "succeeded")
    # an authorization that reaches the acquirer late is refused: no hold outlives it
    late = acquirer.authorize(
        acquirer.AuthorizationRequest(
            pan="4242424242424242", exp_month=12, exp_year=2034, cvc="123",
            amount=payment.amount, currency="EUR", reference=str(payment.pk),
        ),
        livemode=False,
    )  # fmt: skip
    assert (late.approved, late.decline_code) == (False, "reversed")
    assert not JournalEntry.objects.filter(transaction=payment).exists()
    assert ledger_check_invariants().ok


def test_a_declined_authorization_found_by_inquiry_fails_the_payment_with_its_code(merchant):
    payment = crashed_payment("acquirer.authorize", merchant, number="4000000000009995")
    recover()
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code) == ("failed", "insufficient_funds")


def test_an_acquirer_that_does_not_answer_the_inquiry_leaves_the_payment_for_the_next_run(
    merchant, settings
):
    payment = crashed_payment("acquirer.authorize", merchant)
    settings.ACQUIRER_LATENCY_SECONDS, settings.ACQUIRER_TIMEOUT_SECONDS = 1.0, 0.05
    report = recover()
    assert (report.payments_resolved, report.payments_unresolved) == (0, 1)
    assert Transaction.objects.get(pk=payment.pk).status == "initiated"
    settings.ACQUIRER_LATENCY_SECONDS = 0.0
    assert recover().payments_resolved == 1
    assert Transaction.objects.get(pk=payment.pk).status == "captured"


def test_a_timed_out_authorization_is_resolved_by_the_inquiry_in_the_same_request(
    merchant, settings
):
    # The acquirer answers after the timeout; the request's one inquiry finds the answer.
    settings.ACQUIRER_LATENCY_SECONDS, settings.ACQUIRER_TIMEOUT_SECONDS = 0.3, 0.1
    calls = []
    original = acquirer.inquire

    def inquire_fast(reference, *, livemode):
        calls.append(reference)
        settings.ACQUIRER_LATENCY_SECONDS = 0.0
        return original(reference, livemode=livemode)

    acquirer_inquire = pytest.MonkeyPatch.context()
    with acquirer_inquire as patch:
        patch.setattr(acquirer, "inquire", inquire_fast)
        payment = pay(merchant)
    assert payment.status == "captured"
    assert calls == [str(payment.pk)]
    assert SimulatedOperation.objects.filter(authorization=str(payment.pk)).count() == 1


def test_a_capture_booked_before_the_crash_is_sent_by_recovery_and_acts_once(merchant):
    payment = pay(merchant, capture=False)
    with crash_at("capture.booked"), pytest.raises(SimulatedCrash):
        payment_capture(payment=payment, amount=700)
    [command] = AcquirerCommand.objects.filter(transaction=payment)
    assert command.status == "pending"
    assert Transaction.objects.get(pk=payment.pk).status == "captured"  # booked
    assert recover().commands_resolved == 1
    command.refresh_from_db()
    assert command.status == "succeeded"
    assert SimulatedOperation.objects.get(pk=str(payment.pk)).captured_amount == 700
    assert SimulatedOperation.objects.filter(kind="capture").count() == 1


def test_a_refund_whose_process_died_during_the_call_is_completed_by_inquiry(merchant):
    payment = pay(merchant, amount=5_000)
    with crash_at("acquirer.refund"), pytest.raises(SimulatedCrash):
        refund_create(payment=payment, amount=2_000)
    refund = Transaction.objects.get(parent=payment)
    assert refund.status == "pending"
    recover()
    refund.refresh_from_db()
    assert refund.status == "refunded"
    assert SimulatedOperation.objects.filter(kind="refund").count() == 1
    assert merchant_balances(merchant)["EUR"]["pending"] == 3_000
    assert ledger_check_invariants().ok


def test_a_refund_the_acquirer_refuses_gives_the_money_back(merchant):
    payment = pay(merchant, amount=5_000, number="4000000000005126")
    refund = refund_create(payment=payment)
    payment.refresh_from_db()
    assert (refund.status, refund.decline_code) == ("failed", "refund_failed")
    assert (payment.status, payment.refunded_amount) == ("captured", 0)
    assert merchant_balances(merchant)["EUR"]["pending"] == 5_000
    kinds = JournalEntry.objects.filter(transaction=refund).values_list("kind", flat=True)
    assert sorted(kinds) == ["refund", "refund_reversal"]
    assert ledger_check_invariants().ok


def test_a_refused_refund_of_a_settled_payment_returns_it_to_settled_and_available(merchant):
    payment = pay(merchant, amount=5_000, number="4000000000005126")
    settlement_run(
        now=payment.captured_at + datetime.timedelta(days=merchant.settlement_delay_days)
    )
    refund = refund_create(payment=payment)
    payment.refresh_from_db()
    assert (refund.status, payment.status, payment.refunded_amount) == ("failed", "settled", 0)
    assert merchant_balances(merchant)["EUR"]["available"] == 5_000
    assert ledger_check_invariants().ok


@pytest.mark.django_db(transaction=True)
def test_two_recovery_runs_at_once_resolve_each_payment_once(merchant):
    payments = [crashed_payment("acquirer.authorize", merchant, amount=100 + i) for i in range(5)]
    barrier = threading.Barrier(2, timeout=30)
    errors = []

    def run():
        try:
            barrier.wait()
            recover()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for payment in payments:
        stored = Transaction.objects.get(pk=payment.pk)
        assert stored.status == TransactionStatus.CAPTURED
        assert stored.version == 3
        assert JournalEntry.objects.filter(transaction=payment).count() == 1
        assert AuditEntry.objects.filter(object_id=str(payment.pk)).count() == 3
    assert ledger_check_invariants().ok


def test_the_invariant_check_reports_what_recovery_left_in_flight(merchant, settings):
    payment = crashed_payment("payment.intent_committed", merchant)
    later = payment.initiated_at + datetime.timedelta(seconds=settings.IN_FLIGHT_ALARM_SECONDS + 1)
    assert ledger_check_invariants(now=payment.initiated_at).ok
    [problem] = ledger_check_invariants(now=later).problems
    assert problem.startswith(f"payment {payment.pk} has been initiated since")
    recover()
    assert ledger_check_invariants(now=later).ok


def test_an_acquirer_that_is_down_then_back_leaves_nothing_charged_twice(merchant, settings):
    # Down: the authorization and its inquiry both fail at once; the payment waits.
    settings.ACQUIRER_SIMULATOR_DOWN = True
    payment = pay(merchant, amount=2_500)
    assert payment.status == "initiated"
    assert not SimulatedOperation.objects.exists()
    assert recover().payments_unresolved == 1
    held = pay(merchant, amount=900, capture=False)  # also waits
    # Back: the acquirer never received either, so each fails and is reversed; nothing
    # was ever held or captured.
    settings.ACQUIRER_SIMULATOR_DOWN = False
    report = recover()
    assert (report.payments_resolved, report.payments_unresolved) == (2, 0)
    for each in (payment, held):
        each.refresh_from_db()
        assert (each.status, each.decline_code) == ("failed", "acquirer_unavailable")
    book = SimulatedOperation.objects
    assert not book.filter(approved=True).exclude(kind="void").exists()
    assert book.filter(kind="void", approved=True).count() == 2  # the reversals
    assert not JournalEntry.objects.filter(transaction__in=[payment, held]).exists()
    assert ledger_check_invariants().ok
