"""One lock order for every money transaction (``payflow.platform.db``): no deadlock, no contention.

Reproduced before the fix (issue 13, item 5): 30 concurrent payouts gave 409 ``contention``
answers, ``SHOW ENGINE INNODB STATUS`` showing a journal-line insert waiting on
``ledger_account`` while the other transaction waited on ``audit_lanehead``. These run on
the real MariaDB server and count InnoDB's own deadlock counter, so a deadlock that the
retry wrapper hid is still seen.
"""

import datetime

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from ledger.models import Account, AccountKind, Transaction
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.merchants import merchant_create
from ledger.services.payouts import payout_create
from ledger.services.refunds import refund_create
from ledger.services.settlement import settlement_run
from tests.ledger.conftest import pay
from tests.ledger.test_concurrency import failures, race, succeeded

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = 30


def innodb_deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        return int(cursor.fetchone()[1])


def retries() -> float:
    labels = {"reason": "deadlock_or_certification_failure"}
    return REGISTRY.get_sample_value("payflow_db_transaction_retries_total", labels) or 0.0


def test_thirty_concurrent_payouts_never_deadlock():
    # given: a merchant whose available balance covers every payout
    merchant = merchant_create(name="payouts-30", settlement_delay_days=0)
    for _ in range(3):
        pay(merchant, amount=10_000)
    settlement_run(now=timezone.now() + datetime.timedelta(seconds=1))
    assert merchant_balances(merchant)["EUR"]["available"] == 30_000
    deadlocks, retried = innodb_deadlocks(), retries()
    # when
    outcomes = race(
        (None,),
        *[lambda: payout_create(merchant=merchant, amount=1_000, currency="EUR")] * CONCURRENT,
    )
    # then: every payout went through at its first attempt
    assert failures(outcomes) == []
    assert len(succeeded(outcomes)) == CONCURRENT
    assert innodb_deadlocks() - deadlocks == 0
    assert retries() - retried == 0
    assert merchant_balances(merchant)["EUR"]["available"] == 0
    assert Transaction.objects.filter(merchant=merchant, type="payout").count() == CONCURRENT
    assert ledger_check_invariants().ok


def test_thirty_concurrent_refunds_of_one_payment_never_deadlock_or_give_up():
    merchant = merchant_create(name="refunds-30")
    payment = pay(merchant, amount=CONCURRENT * 1_000)
    deadlocks, retried = innodb_deadlocks(), retries()
    outcomes = race(
        (None,),
        *[lambda: refund_create(payment=payment, amount=1_000)] * CONCURRENT,
    )
    assert failures(outcomes) == []
    assert innodb_deadlocks() - deadlocks == 0
    assert retries() - retried == 0
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == ("refunded", CONCURRENT * 1_000)
    assert merchant_balances(merchant)["EUR"]["pending"] == 0
    assert ledger_check_invariants().ok


def test_thirty_concurrent_refunds_of_settled_payments_never_deadlock():
    # Refunds of settled payments debit the tracked available balance: payment rows,
    # then the account row, then the audit lanes.
    merchant = merchant_create(name="refunds-settled-30", settlement_delay_days=0)
    payments = [pay(merchant, amount=1_000) for _ in range(CONCURRENT)]
    settlement_run(now=timezone.now() + datetime.timedelta(seconds=1))
    deadlocks, retried = innodb_deadlocks(), retries()
    outcomes = race(
        (None,),
        *[lambda payment=payment: refund_create(payment=payment) for payment in payments],
    )
    assert failures(outcomes) == []
    assert innodb_deadlocks() - deadlocks == 0
    assert retries() - retried == 0
    assert merchant_balances(merchant)["EUR"]["available"] == 0
    assert ledger_check_invariants().ok


def test_twenty_concurrent_first_payments_in_a_currency_create_one_platform_account():
    # Reproduced before the fix (item 4): the conditional UniqueConstraint is skipped on
    # MariaDB (no partial indexes); 20 first CHF payments made 8 clearing accounts.
    merchants = [merchant_create(name=f"chf-{i}") for i in range(20)]
    outcomes = race(
        (None,),
        *[lambda m=m: pay(m, amount=500, currency="CHF") for m in merchants],
    )
    assert failures(outcomes) == []
    clearing = Account.objects.filter(
        merchant=None, kind=AccountKind.ACQUIRER_CLEARING, currency="CHF"
    )
    assert clearing.count() == 1
    assert ledger_check_invariants().ok
