"""Money under concurrency: real threads on single MariaDB, and writers on two Galera nodes.

Each scenario runs twice: ``mariadb`` (both threads on the test database) and ``galera``
(thread 1 writes through node 1, thread 2 through node 2, so the conflict surfaces as a
certification failure at COMMIT and is retried by ``payflow.db.atomic``).
"""

import contextlib
import datetime
import threading

import pytest
from django.db import connections
from django.utils import timezone

from ledger.exceptions import (
    AmountExceedsRemaining,
    ConcurrentUpdate,
    InsufficientBalance,
    InvalidStateTransition,
)
from ledger.models import Transaction
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.merchants import merchant_create
from ledger.services.payments import payment_cancel, payment_capture
from ledger.services.payouts import payout_create
from ledger.services.refunds import refund_create
from ledger.services.settlement import settlement_run
from payflow import context
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
        merchant = merchant_create(name="race-payout", settlement_delay_days=0)
        pay(merchant, amount=10_000)
        settlement_run(now=timezone.now() + datetime.timedelta(seconds=1))
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
