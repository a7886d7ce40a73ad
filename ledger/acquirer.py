"""The acquirer gateway: an interface and the built-in simulator.

The simulator follows the public test card numbers merchants know:

=================  =========================
4242424242424242   approved
4000000000000002   declined: generic_decline
4000000000009995   declined: insufficient_funds
4000000000000069   declined: expired_card
4000000000000127   declined: incorrect_cvc
4000000000000119   processing_error
any other number   approved (it passed Luhn before reaching here)
=================  =========================

Calls to the acquirer leave the process, so they are ``outside_transaction``: the caller
records the payment as ``initiated`` and commits first, then calls, then records the
outcome (DESIGN.md section 3).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from payflow.db import outside_transaction

DECLINES = {
    "4000000000000002": ("generic_decline", "The card was declined."),
    "4000000000009995": ("insufficient_funds", "The card has insufficient funds."),
    "4000000000000069": ("expired_card", "The card has expired."),
    "4000000000000127": ("incorrect_cvc", "The card's security code is incorrect."),
    "4000000000000119": ("processing_error", "An error occurred while processing the card."),
}


@dataclass(frozen=True)
class AuthorizationRequest:
    pan: str
    exp_month: int
    exp_year: int
    cvc: str | None
    amount: int
    currency: str
    reference: str  # our transaction id, for the acquirer's records

    def __repr__(self) -> str:  # never show the PAN or CVC
        return (
            f"AuthorizationRequest(card=****{self.pan[-4:]}, amount={self.amount}, "
            f"currency={self.currency}, reference={self.reference})"
        )


@dataclass(frozen=True)
class AuthorizationResult:
    approved: bool
    authorization_code: str = ""
    decline_code: str = ""
    message: str = ""


class Acquirer(Protocol):
    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult: ...


class SimulatedAcquirer:
    """Answers like a real acquirer's test environment, after an optional latency."""

    def __init__(self, latency_seconds: float = 0.0) -> None:
        self.latency_seconds = latency_seconds

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        decline = DECLINES.get(request.pan)
        if decline:
            code, message = decline
            return AuthorizationResult(approved=False, decline_code=code, message=message)
        return AuthorizationResult(approved=True, authorization_code=secrets.token_hex(3))


def get_acquirer() -> Acquirer:
    """The configured acquirer (``ACQUIRER_CLASS``), the simulator by default."""
    path = getattr(settings, "ACQUIRER_CLASS", "ledger.acquirer.SimulatedAcquirer")
    acquirer_class = import_string(path)
    return acquirer_class(latency_seconds=getattr(settings, "ACQUIRER_LATENCY_SECONDS", 0.0))


@outside_transaction
def authorize(request: AuthorizationRequest) -> AuthorizationResult:
    """Ask the acquirer to authorize; never inside a database transaction."""
    return get_acquirer().authorize(request)
