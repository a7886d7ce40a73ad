"""Random sequences of ledger operations keep the books balanced (Hypothesis, MariaDB)."""

import datetime

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.exceptions import LedgerError
from ledger.models import Transaction
from ledger.selectors import ledger_check_invariants, merchant_balances
from ledger.services.merchants import merchant_create
from ledger.services.payments import payment_cancel, payment_capture
from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from tests.ledger.conftest import pay
from tests.money_snapshot import changes, snapshot

amounts = st.integers(min_value=1, max_value=50_000)
DECLINING = "4000000000000002"


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.merchant = merchant_create(name="property", settlement_delay_days=1)
        self.now = timezone.now()
        self.payments: list = []

    def _some_payment(self, index):
        return self.payments[index % len(self.payments)]

    def _attempt(self, operation):
        # Refusals (over-refunds, payouts above balance, illegal transitions) are part of
        # the game, and a refusal leaves every money table exactly as it was; anything
        # else raised is a bug and fails the test.
        before = snapshot()
        refused = None
        try:
            operation()
        except LedgerError as refusal:
            refused = refusal
        if refused is not None:
            assert changes(before, snapshot()) == {}, refused

    @rule(amount=amounts, capture=st.booleans(), declined=st.booleans())
    def create_payment(self, amount, capture, declined):
        number = DECLINING if declined else "4242424242424242"
        self.payments.append(pay(self.merchant, amount=amount, capture=capture, number=number))

    @precondition(lambda self: self.payments)
    @rule(index=st.integers(0, 1000), amount=st.none() | amounts)
    def capture(self, index, amount):
        self._attempt(lambda: payment_capture(payment=self._some_payment(index), amount=amount))

    @precondition(lambda self: self.payments)
    @rule(index=st.integers(0, 1000))
    def cancel(self, index):
        self._attempt(lambda: payment_cancel(payment=self._some_payment(index)))

    @precondition(lambda self: self.payments)
    @rule(index=st.integers(0, 1000), amount=st.none() | amounts)
    def refund(self, index, amount):
        self._attempt(lambda: refund_create(payment=self._some_payment(index), amount=amount))

    @precondition(lambda self: self.payments)
    @rule(index=st.integers(0, 1000), amount=amounts)
    def chargeback(self, index, amount):
        payment = self._some_payment(index)
        self._attempt(lambda: chargeback_create(payment=payment, amount=amount, reason="fraud"))

    @rule(days=st.integers(0, 3))
    def settle(self, days):
        self.now += datetime.timedelta(days=days)
        settlement_run(now=self.now)

    @rule(amount=amounts)
    def payout(self, amount):
        self._attempt(lambda: payout_create(merchant=self.merchant, amount=amount, currency="EUR"))

    @invariant()
    def books_balance(self):
        report = ledger_check_invariants()
        assert report.ok, report.problems

    @invariant()
    def refunds_never_exceed_captured_and_no_balance_is_negative(self):
        for payment in Transaction.objects.filter(merchant=self.merchant, type="payment"):
            assert payment.refunded_amount + payment.charged_back_amount <= payment.captured_amount
        for balances in merchant_balances(self.merchant).values():
            assert min(balances.values()) >= 0, balances


@pytest.mark.django_db
def test_random_operation_sequences_keep_the_ledger_balanced():
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
