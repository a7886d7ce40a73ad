import contextlib

import pytest
from django.db import connection

from ledger.services.merchants import merchant_create
from ledger.services.payments import CardInput, payment_create
from ledger.signals import ledger_changed

VISA_OK = "4242424242424242"


@pytest.fixture
def merchant(db):
    return merchant_create(name="Boulangerie Martin", default_currency="EUR")


@pytest.fixture
def other_merchant(db):
    return merchant_create(name="Other Shop")


def card(number: str = VISA_OK, cvc: str | None = None) -> CardInput:
    if cvc is None:
        cvc = "1234" if number[:2] in ("34", "37") else "123"  # Amex has 4 digits
    return CardInput(number=number, exp_month=12, exp_year=2034, cvc=cvc)


def pay(merchant, amount=10_000, currency="EUR", capture=True, number=VISA_OK, **kwargs):
    return payment_create(
        merchant=merchant,
        amount=amount,
        currency=currency,
        card=card(number),
        capture=capture,
        **kwargs,
    )


@pytest.fixture
def recorded():
    """Every ledger_changed signal, with whether a transaction was open when it was sent."""
    events = []

    def receiver(sender, instance, action, event_type, old_values, new_values, **kwargs):
        events.append(
            {
                "event_type": event_type,
                "action": action,
                "in_transaction": connection.in_atomic_block,
                "instance": instance,
                "old": old_values,
                "new": new_values,
            }
        )

    ledger_changed.connect(receiver, dispatch_uid="test-vault-recorder")
    yield events
    ledger_changed.disconnect(dispatch_uid="test-vault-recorder")


class SimulatedCrash(BaseException):
    """Stands for the process dying at a fault point (in-process tests; the kill -9 suite
    in tests/faults kills real processes). A BaseException: no ``except Exception`` in
    the code under test catches it, as nothing catches a SIGKILL."""


@contextlib.contextmanager
def crash_at(point: str):
    """The first thread to reach ``point`` inside the block "dies" there."""
    from payflow.platform import faults

    def die():
        raise SimulatedCrash(point)

    with faults.hooked(point, die):
        yield
