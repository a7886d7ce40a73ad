"""After every kind of money movement, no test PAN is stored anywhere or logged."""

import datetime
import logging

from django.utils import timezone

from ledger.services.payouts import payout_create
from ledger.services.refunds import chargeback_create, refund_create
from ledger.services.settlement import settlement_run
from tests.ledger.conftest import pay
from tests.pan_scan import (
    TEST_CARD_NUMBERS,
    card_numbers_in_text,
    find_card_numbers_in_database,
    find_pans_in_database,
    find_pans_in_text,
)

CARDS = TEST_CARD_NUMBERS


def test_no_pan_in_any_table_or_log_after_payments_refunds_chargebacks_and_payouts(
    merchant, caplog, unredacted_logs
):
    caplog.set_level(logging.DEBUG)
    # given every test card charged: approvals captured, declines failed
    payments = [pay(merchant, amount=10_000, number=number) for number in CARDS]
    captured = [payment for payment in payments if payment.status == "captured"]
    assert len(captured) == 3
    # when money moves every way it can
    refund_create(payment=captured[0], amount=1_000)
    chargeback_create(payment=captured[1], amount=2_000, reason="fraudulent")
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))
    payout_create(merchant=merchant, amount=5_000, currency="EUR")
    refund_create(payment=captured[2])
    # then no column of any table and no log line holds a PAN, in any form
    assert find_pans_in_database(CARDS) == []
    assert find_pans_in_text(caplog.text, CARDS) == []
    # nor any other card number (the list above is the cards we charged)
    assert find_card_numbers_in_database() == []
    assert card_numbers_in_text(caplog.text) == []
