"""The acquirer simulator: idempotent by reference, decides before it answers, reversals."""

import functools
import time
import uuid

import pytest

from ledger import acquirer
from ledger.acquirer import AcquirerTimeout, AuthorizationRequest, CommandRequest
from ledger.models import SimulatedOperation
from ledger.simulator import REFUNDS_FAIL

pytestmark = pytest.mark.django_db

# The simulator is test mode's acquirer.
authorize = functools.partial(acquirer.authorize, livemode=False)
command = functools.partial(acquirer.command, livemode=False)
inquire = functools.partial(acquirer.inquire, livemode=False)


def auth_request(reference=None, pan="4242424242424242", amount=1_000, capture=False):
    return AuthorizationRequest(
        pan=pan,
        exp_month=12,
        exp_year=2034,
        cvc="123",
        amount=amount,
        currency="EUR",
        reference=reference or str(uuid.uuid4()),
        capture=capture,
    )


def cmd(kind, authorization, amount=1_000, reference=None):
    return CommandRequest(
        kind=kind,
        reference=reference or str(uuid.uuid4()),
        authorization=authorization,
        amount=amount,
        currency="EUR",
    )


def test_the_same_authorization_reference_gets_the_first_answer_and_holds_funds_once():
    request = auth_request()
    first = authorize(request)
    again = authorize(request)
    assert first.approved
    assert again == first
    assert SimulatedOperation.objects.filter(authorization=request.reference).count() == 1


def test_a_declining_card_is_declined_the_same_way_twice():
    request = auth_request(pan="4000000000000002")
    assert authorize(request) == authorize(request)
    assert authorize(request).decline_code == "generic_decline"


def test_a_command_sent_twice_acts_once():
    request = auth_request()
    authorize(request)
    capture = cmd("capture", request.reference, amount=600)
    assert command(capture).approved
    assert command(capture).approved
    auth = SimulatedOperation.objects.get(pk=request.reference)
    assert auth.captured_amount == 600
    # a second capture under another reference is refused: one capture per authorization
    assert command(cmd("capture", request.reference)).decline_code == "already_captured"


def test_refunds_cannot_exceed_what_was_captured_and_the_refund_failing_card_refuses_them():
    sale = auth_request(amount=1_000, capture=True)
    authorize(sale)
    assert command(cmd("refund", sale.reference, amount=700)).approved
    assert command(cmd("refund", sale.reference, amount=400)).decline_code == "amount_too_large"
    failing = auth_request(pan=REFUNDS_FAIL, capture=True)
    assert authorize(failing).approved
    assert command(cmd("refund", failing.reference)).decline_code == "refund_failed"


def test_a_void_before_the_authorization_arrives_makes_the_late_authorization_fail():
    # The reversal after a timeout (ISO 8583): the acquirer refuses the late request.
    request = auth_request()
    assert command(cmd("void", request.reference)).approved
    late = authorize(request)
    assert (late.approved, late.decline_code) == (False, "reversed")
    assert inquire(request.reference).decline_code == "reversed"


def test_a_void_after_the_authorization_releases_it_and_a_capture_is_then_refused():
    request = auth_request()
    authorize(request)
    assert command(cmd("void", request.reference)).approved
    assert command(cmd("capture", request.reference)).decline_code == "authorization_voided"


def test_inquiry_of_an_unknown_reference_is_none_and_of_a_known_one_its_answer():
    request = auth_request()
    assert inquire(request.reference) is None
    answer = authorize(request)
    assert inquire(request.reference) == answer


def test_a_slow_acquirer_decides_first_and_the_caller_times_out_after_the_timeout(settings):
    settings.ACQUIRER_LATENCY_SECONDS = 5.0
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.2
    request = auth_request()
    started = time.monotonic()
    with pytest.raises(AcquirerTimeout):
        authorize(request)
    assert 0.2 <= time.monotonic() - started < 2.0
    # the acquirer did authorize: an inquiry finds it
    settings.ACQUIRER_LATENCY_SECONDS = 0.0
    assert inquire(request.reference).approved
