"""Money under concurrency: real threads on single MariaDB, and writers on two Galera nodes.

Each scenario runs twice: ``mariadb`` (both threads on the test database) and ``galera``
(thread 1 writes through node 1, thread 2 through node 2, so the conflict surfaces as a
certification failure at COMMIT and is retried by ``payflow.platform.db.atomic``).
"""

import contextlib
import datetime
import threading

import pytest
from django.db import connections
from django.utils import timezone

from audit.models import AuditEntry
from ledger.exceptions import (
    AmountExceedsRemaining,
    ConcurrentUpdate,
    InsufficientBalance,
    InvalidStateTransition,
    MerchantInactive,
)
from ledger.models import Merchant, Transaction
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from ledger.services.merchants import merchant_create, merchant_suspend
from ledger.services.payments import payment_cancel, payment_capture
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from payflow.platform import context
from tests.infra.fixtures import default_database_is
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["mariadb", pytest.param("galera", marks=pytest.mark.galera)])
def writers(request):
    """The database each of the two writer threads uses, and where setup happens."""
    if request.param == "galera":
        request.getfixturevalue("galera")
        return ("galera1", "galera2")
    return (None, None)


@contextlib.contextmanager
def on(alias):
    if alias is None:
        yield
    else:
        with default_database_is(alias):
            yield


def race(writers, *actions):
    """Run each action in its own thread on its own node, released together."""
    barrier = threading.Barrier(len(actions), timeout=30)
    outcomes = [None] * len(actions)
    actor = context.current()  # a new thread starts with an empty context

    def run(index, action, alias):
        try:
            with context.replaced(actor), on(alias):
                barrier.wait()
                outcomes[index] = ("ok", action())
        except Exception as exc:
            outcomes[index] = ("error", exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(i, action, writers[i % len(writers)]))
        for i, action in enumerate(actions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def settle_now():
    settlement_run(now=timezone.now() + datetime.timedelta(seconds=1))


def with_available(name, amount):
    """A merchant (settling at once) with ``amount`` EUR available."""
    merchant = merchant_create(name=name, settlement_delay_days=0)
    pay(merchant, amount=amount)
    settle_now()
    return merchant


def succeeded(outcomes):
    return [value for kind, value in outcomes if kind == "ok"]


def failures(outcomes):
    return [value for kind, value in outcomes if kind == "error"]


def test_two_refunds_of_60_percent_each_exactly_one_succeeds(writers):
    with on(writers[0]):
        merchant = merchant_create(name="race-refund")
        payment = pay(merchant, amount=10_000)
    outcomes = race(
        writers,
        lambda: refund_create(payment=payment, amount=6_000),
        lambda: refund_create(payment=payment, amount=6_000),
    )
    assert len(succeeded(outcomes)) == 1
    [error] = failures(outcomes)
    assert isinstance(error, AmountExceedsRemaining | ConcurrentUpdate)
    with on(writers[0]):
        payment.refresh_from_db()
        assert payment.refunded_amount == 6_000
        assert Transaction.objects.filter(parent=payment, type="refund").count() == 1
        assert merchant_balances(merchant)["EUR"]["pending"] == 4_000
        assert ledger_check_invariants().ok


def test_two_refunds_that_fit_together_both_succeed(writers):
    with on(writers[0]):
        merchant = merchant_create(name="race-refund-fit")
        payment = pay(merchant, amount=10_000)
    outcomes = race(
        writers,
        lambda: refund_create(payment=payment, amount=3_000),
        lambda: refund_create(payment=payment, amount=3_000),
    )
    assert failures(outcomes) == []
    with on(writers[0]):
        payment.refresh_from_db()
        assert payment.refunded_amount == 6_000


def test_capture_racing_cancel_exactly_one_wins(writers):
    with on(writers[0]):
        merchant = merchant_create(name="race-capture")
        payment = pay(merchant, amount=5_000, capture=False)
    outcomes = race(
        writers,
        lambda: payment_capture(payment=payment),
        lambda: payment_cancel(payment=payment),
    )
    [winner] = succeeded(outcomes)
    [error] = failures(outcomes)
    assert isinstance(error, ConcurrentUpdate | InvalidStateTransition)
    with on(writers[0]):
        stored = Transaction.objects.get(pk=payment.pk)
        assert stored.status == winner.status
        pending = merchant_balances(merchant).get("EUR", {}).get("pending", 0)
        assert pending == (5_000 if winner.status == "captured" else 0)
        assert ledger_check_invariants().ok


def test_concurrent_payouts_never_exceed_the_available_balance(writers):
    with on(writers[0]):
        merchant = with_available("race-payout", 10_000)
        assert merchant_balances(merchant)["EUR"]["available"] == 10_000
    outcomes = race(
        writers,
        *[lambda: payout_create(merchant=merchant, amount=3_000, currency="EUR")] * 4,
    )
    assert len(succeeded(outcomes)) == 3
    [error] = failures(outcomes)
    assert isinstance(error, InsufficientBalance)
    with on(writers[0]):
        assert merchant_balances(merchant)["EUR"]["available"] == 1_000
        assert Transaction.objects.filter(merchant=merchant, type="payout").count() == 3
        assert ledger_check_invariants().ok


def test_a_chargeback_racing_a_refund_never_returns_more_than_was_captured(writers):
    with on(writers[0]):
        merchant = merchant_create(name="race-chargeback")
        payment = pay(merchant, amount=10_000)
    outcomes = race(
        writers,
        lambda: refund_create(payment=payment, amount=7_000),
        lambda: chargeback_create(payment=payment, amount=7_000, reason="fraudulent"),
    )
    [winner] = succeeded(outcomes)
    [error] = failures(outcomes)
    assert isinstance(error, AmountExceedsRemaining | ConcurrentUpdate)
    with on(writers[0]):
        payment.refresh_from_db()
        assert payment.refunded_amount + payment.charged_back_amount == 7_000
        assert Transaction.objects.filter(parent=payment).count() == 1
        assert Transaction.objects.get(parent=payment).type == winner.type
        assert merchant_balances(merchant)["EUR"]["pending"] == 3_000
        assert ledger_check_invariants().ok


def test_a_refund_racing_the_settlement_takes_its_money_from_the_right_balance(writers):
    # The refund decides pending or available from the payment's status; the settlement
    # moves the net from pending to available. Whichever order they commit in, the books
    # end with 6,000 available and nothing pending.
    with on(writers[0]):
        merchant = merchant_create(name="race-settle", settlement_delay_days=0)
        payment = pay(merchant, amount=10_000)
    outcomes = race(
        writers,
        lambda: refund_create(payment=payment, amount=4_000),
        settle_now,
    )
    assert failures(outcomes) == []
    with on(writers[0]):
        settle_now()  # if it lost
        payment.refresh_from_db()
        assert (payment.status, payment.refunded_amount) == ("settled", 4_000)
        balances = merchant_balances(merchant)["EUR"]
        assert (balances["pending"], balances["available"]) == (0, 6_000)
        assert ledger_check_invariants().ok


def test_a_suspension_racing_a_payout_either_refuses_it_or_comes_after_it(writers):
    with on(writers[0]):
        merchant = with_available("race-suspend", 10_000)
    outcomes = race(
        writers,
        lambda: payout_create(merchant=merchant, amount=1_000, currency="EUR"),
        lambda: merchant_suspend(merchant=merchant),
    )
    payout_outcome, suspension = outcomes
    assert suspension[0] == "ok"
    with on(writers[0]):
        payouts = Transaction.objects.filter(merchant=merchant, type="payout").count()
        if payout_outcome[0] == "ok":
            assert payouts == 1
        else:
            assert isinstance(payout_outcome[1], MerchantInactive)
            assert payouts == 0
        assert Merchant.objects.get(pk=merchant.pk).status == "suspended"
        assert ledger_check_invariants().ok


def test_two_revocations_of_one_key_revoke_it_once_and_it_stops_working(writers):
    with on(writers[0]):
        merchant = merchant_create(name="race-revoke")
        issued = api_key_create(merchant=merchant)
    outcomes = race(
        writers,
        lambda: api_key_revoke(api_key=issued.api_key),
        lambda: api_key_revoke(api_key=issued.api_key),
    )
    # revoking is idempotent: the later call finds the key revoked (or, having read it
    # before the other's commit, loses the compare-and-set); never a second revocation
    assert all(isinstance(error, ConcurrentUpdate) for error in failures(outcomes)), outcomes
    assert succeeded(outcomes)
    with on(writers[0]):
        revoked = AuditEntry.objects.filter(
            object_id=str(issued.api_key.pk), event_type="api_key.revoked"
        )
        assert revoked.count() == 1
        assert api_key_authenticate(issued.secret) is None
