"""The acquirer gateway: the interface every acquirer implements, and PayFlow's calls to it.

An acquirer (``Acquirer``) answers five calls, each **idempotent by our reference** (the
same reference asked twice gets the first answer and moves money once) and each **bounded
by a timeout** (``ACQUIRER_TIMEOUT_SECONDS``):

- ``authorize(AuthorizationRequest)``: hold (and with ``capture=True`` also take) an
  amount on a card. The reference is the payment's id.
- ``capture``, ``void``, ``refund`` (``CommandRequest``): act on an earlier authorization
  (``authorization`` = the payment's id). The reference is the ``AcquirerCommand``'s id.
  A ``void`` of an authorization the acquirer never received is a *reversal*: it is
  recorded, and an authorization arriving later with that reference is refused (what
  ISO 8583's reversal after a timeout does).
- ``inquire(reference)``: what the acquirer knows of an earlier request, or ``None`` when
  it never received it.

No answer in time raises ``AcquirerUnavailable``: the outcome is *unknown*, never a
decline. Work left in flight is resolved later by ``inquire`` (``ledger.services.
recovery``), never by authorizing again: the CVC is gone by then, and a cardholder must
not be charged twice.

Every call leaves the process, so each is ``outside_transaction``: record the intent and
commit first, call, then record the answer (DESIGN.md section 3).

**One acquirer per mode.** Test mode's (``TEST_ACQUIRER_CLASS``) is the simulator,
``ledger.simulator.SimulatedAcquirer``; live mode's is ``LIVE_ACQUIRER_CLASS``, empty by
default: then a live payment is refused before anything is written
(``LiveModeUnavailable``), and a live command or inquiry left over is ``AcquirerUnavailable``
(it waits, it is never sent to the test acquirer). Every call names the mode of the
object it is about, so test money never reaches a live acquirer and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from payflow.platform.db import outside_transaction


class AcquirerUnavailable(Exception):
    """The acquirer did not answer (timeout, connection refused): the outcome is unknown."""


class AcquirerTimeout(AcquirerUnavailable):
    """No answer within ``ACQUIRER_TIMEOUT_SECONDS``."""


class AcquirerNotConfigured(AcquirerUnavailable):
    """The mode has no acquirer (``LIVE_ACQUIRER_CLASS`` empty): nothing can be asked."""


@dataclass(frozen=True)
class AuthorizationRequest:
    pan: str
    exp_month: int
    exp_year: int
    cvc: str | None
    amount: int
    currency: str
    reference: str  # the payment's id: the acquirer's idempotency key for it
    capture: bool = False  # take the money in the same call (a "sale")

    def __repr__(self) -> str:  # never show the PAN or CVC
        return (
            f"AuthorizationRequest(card=****{self.pan[-4:]}, amount={self.amount}, "
            f"currency={self.currency}, reference={self.reference}, capture={self.capture})"
        )


@dataclass(frozen=True)
class CommandRequest:
    """A capture, void or refund of an earlier authorization."""

    kind: str  # "capture", "void" or "refund"
    reference: str  # the AcquirerCommand's id
    authorization: str  # the payment's id (the authorization's reference)
    amount: int
    currency: str


@dataclass(frozen=True)
class AcquirerResult:
    """The acquirer's answer to one request. ``decline_code`` explains a refusal."""

    approved: bool
    authorization_code: str = ""
    decline_code: str = ""
    message: str = ""


#: The historical name of the answer to an authorization.
AuthorizationResult = AcquirerResult


class Acquirer(Protocol):
    def authorize(self, request: AuthorizationRequest) -> AcquirerResult: ...
    def capture(self, request: CommandRequest) -> AcquirerResult: ...
    def void(self, request: CommandRequest) -> AcquirerResult: ...
    def refund(self, request: CommandRequest) -> AcquirerResult: ...
    def inquire(self, reference: str) -> AcquirerResult | None: ...


def acquirer_class_path(livemode: bool) -> str:
    """The dotted path of the mode's acquirer; empty when the mode has none."""
    return settings.LIVE_ACQUIRER_CLASS if livemode else settings.TEST_ACQUIRER_CLASS


def acquirer_configured(livemode: bool) -> bool:
    return bool(acquirer_class_path(livemode))


def get_acquirer(livemode: bool) -> Acquirer:
    """The mode's acquirer; raises ``AcquirerNotConfigured`` when it has none."""
    path = acquirer_class_path(livemode)
    if not path:
        raise AcquirerNotConfigured("no live acquirer is configured (LIVE_ACQUIRER_CLASS)")
    return import_string(path)(
        latency_seconds=settings.ACQUIRER_LATENCY_SECONDS,
        timeout_seconds=settings.ACQUIRER_TIMEOUT_SECONDS,
    )


@outside_transaction
def authorize(request: AuthorizationRequest, *, livemode: bool) -> AcquirerResult:
    """Ask the mode's acquirer to authorize; raises ``AcquirerUnavailable`` without an
    answer."""
    return get_acquirer(livemode).authorize(request)


@outside_transaction
def command(request: CommandRequest, *, livemode: bool) -> AcquirerResult:
    """Send a capture, void or refund; raises ``AcquirerUnavailable`` without an answer."""
    acquirer = get_acquirer(livemode)
    send = {"capture": acquirer.capture, "void": acquirer.void, "refund": acquirer.refund}
    return send[request.kind](request)


@outside_transaction
def inquire(reference: str, *, livemode: bool) -> AcquirerResult | None:
    """What the mode's acquirer knows of ``reference`` (``None``: never received it);
    raises ``AcquirerUnavailable`` without an answer."""
    return get_acquirer(livemode).inquire(reference)
