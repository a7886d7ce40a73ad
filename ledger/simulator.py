"""The built-in acquirer: a simulator that answers like a real acquirer's test environment.

It follows the public test card numbers merchants know:

=================  ============================================================
4242424242424242   approved
4000000000000002   declined: generic_decline
4000000000009995   declined: insufficient_funds
4000000000000069   declined: expired_card
4000000000000127   declined: incorrect_cvc
4000000000000119   declined: processing_error
4000000000005126   approved; every refund of it is refused (refund_failed)
any other number   approved (it passed Luhn before reaching here)
=================  ============================================================

Like a real acquirer it is **idempotent by reference** and keeps its own book
(``SimulatedOperation``, in the database so every web and worker process sees one
acquirer): the same authorization reference asked twice gets the first answer and holds
funds once; a capture, void or refund command asked twice acts once. Every decision is
committed *before* the answer travels back, so a caller killed while waiting finds it
again with ``inquire``. Captures, voids and refunds of one authorization are serialized
on its row.

Knobs for tests and drills: ``latency_seconds`` (``ACQUIRER_LATENCY_SECONDS``) delays
every answer; when it exceeds ``timeout_seconds`` the caller gives up at the timeout
(``AcquirerTimeout``) although the acquirer decided: the case recovery by inquiry exists
for. ``ACQUIRER_SIMULATOR_DOWN`` (read at each call) makes it unreachable: every call,
inquiries included, fails at once with ``AcquirerUnavailable`` and nothing is decided,
as when the acquirer's endpoint refuses connections.
"""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.db import IntegrityError, transaction

from ledger.acquirer import (
    AcquirerResult,
    AcquirerTimeout,
    AcquirerUnavailable,
    AuthorizationRequest,
    CommandRequest,
)
from ledger.models import SimulatedOperation as Op
from payflow.platform import db, faults

DECLINES = {
    "4000000000000002": ("generic_decline", "The card was declined."),
    "4000000000009995": ("insufficient_funds", "The card has insufficient funds."),
    "4000000000000069": ("expired_card", "The card has expired."),
    "4000000000000127": ("incorrect_cvc", "The card's security code is incorrect."),
    "4000000000000119": ("processing_error", "An error occurred while processing the card."),
}
REFUNDS_FAIL = "4000000000005126"


def _answer(op: Op) -> AcquirerResult:
    return AcquirerResult(
        approved=op.approved,
        authorization_code=op.authorization_code,
        decline_code=op.decline_code,
        message=op.message,
    )


def _insert_once(**fields: object) -> Op:
    """Insert the row for a reference, or return the one a concurrent call inserted."""
    try:
        with transaction.atomic():  # a savepoint: the duplicate key must not end ours
            return Op.objects.create(**fields)
    except IntegrityError:
        return Op.objects.get(pk=fields["reference"])


@db.atomic
def _decide_authorization(request: AuthorizationRequest) -> Op:
    existing = Op.objects.filter(pk=request.reference).first()
    if existing is not None:
        return existing  # the first answer, funds held once
    decline = DECLINES.get(request.pan)
    fields = {
        "reference": request.reference,
        "kind": Op.AUTHORIZE,
        "authorization": request.reference,
        "amount": request.amount,
        "currency": request.currency,
        "refunds_fail": request.pan == REFUNDS_FAIL,
    }
    if decline:
        code, message = decline
        return _insert_once(**fields, approved=False, decline_code=code, message=message)
    return _insert_once(
        **fields,
        approved=True,
        authorization_code=secrets.token_hex(3),
        captured_amount=request.amount if request.capture else 0,
    )


def _refused(request: CommandRequest, code: str, message: str) -> Op:
    return _command_answer(request, approved=False, decline_code=code, message=message)


def _accepted(request: CommandRequest) -> Op:
    return _command_answer(request, approved=True, authorization_code=secrets.token_hex(3))


def _command_answer(request: CommandRequest, **outcome: object) -> Op:
    return _insert_once(
        reference=request.reference,
        kind=request.kind,
        authorization=request.authorization,
        amount=request.amount,
        currency=request.currency,
        **outcome,
    )


@db.atomic
def _decide_command(request: CommandRequest) -> Op:
    existing = Op.objects.filter(pk=request.reference).first()
    if existing is not None:
        return existing
    auth = Op.objects.select_for_update().filter(pk=request.authorization).first()
    if request.kind == Op.VOID:
        return _void(request, auth)
    if auth is None or not auth.approved:
        return _refused(request, "authorization_not_found", "No such approved authorization.")
    if auth.voided:
        return _refused(request, "authorization_voided", "The authorization was voided.")
    if request.kind == Op.CAPTURE:
        return _capture(request, auth)
    return _refund(request, auth)


def _void(request: CommandRequest, auth: Op | None) -> Op:
    if auth is None:
        # A reversal of an authorization never received: record the reference as refused,
        # so an authorization arriving late with it is declined, not approved.
        _insert_once(
            reference=request.authorization,
            kind=Op.AUTHORIZE,
            authorization=request.authorization,
            amount=request.amount,
            currency=request.currency,
            approved=False,
            decline_code="reversed",
            message="The authorization was reversed before it arrived.",
        )
        return _accepted(request)
    if auth.approved and auth.captured_amount:
        return _refused(request, "already_captured", "A captured authorization cannot be voided.")
    if auth.approved and not auth.voided:
        Op.objects.filter(pk=auth.pk).update(voided=True)
    return _accepted(request)


def _capture(request: CommandRequest, auth: Op) -> Op:
    if auth.captured_amount:
        return _refused(request, "already_captured", "The authorization was already captured.")
    if request.amount > auth.amount:
        return _refused(request, "amount_too_large", "The capture exceeds the authorization.")
    Op.objects.filter(pk=auth.pk).update(captured_amount=request.amount)
    return _accepted(request)


def _refund(request: CommandRequest, auth: Op) -> Op:
    if auth.refunds_fail:
        return _refused(request, "refund_failed", "The card issuer refused the refund.")
    if auth.refunded_amount + request.amount > auth.captured_amount:
        return _refused(request, "amount_too_large", "The refund exceeds what was captured.")
    Op.objects.filter(pk=auth.pk).update(refunded_amount=auth.refunded_amount + request.amount)
    return _accepted(request)


class SimulatedAcquirer:
    """The acquirer of ``make run`` and the tests: test mode's (``TEST_ACQUIRER_CLASS``)."""

    def __init__(self, latency_seconds: float = 0.0, timeout_seconds: float = 10.0) -> None:
        self.latency_seconds = latency_seconds
        self.timeout_seconds = timeout_seconds

    def _reply(self, kind: str, op: Op) -> AcquirerResult:
        self._travel(kind)
        return _answer(op)

    def _travel(self, kind: str) -> None:
        # The decision is committed; now the answer travels back, slowly if so configured.
        faults.point(f"acquirer.{kind}")
        if self.latency_seconds > self.timeout_seconds:
            time.sleep(self.timeout_seconds)
            raise AcquirerTimeout(f"no answer from the acquirer within {self.timeout_seconds}s")
        if self.latency_seconds:
            time.sleep(self.latency_seconds)

    @staticmethod
    def _reachable() -> None:
        if getattr(settings, "ACQUIRER_SIMULATOR_DOWN", False):
            raise AcquirerUnavailable("connection refused (ACQUIRER_SIMULATOR_DOWN)")

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        self._reachable()
        return self._reply(Op.AUTHORIZE, _decide_authorization(request))

    def capture(self, request: CommandRequest) -> AcquirerResult:
        self._reachable()
        return self._reply(Op.CAPTURE, _decide_command(request))

    def void(self, request: CommandRequest) -> AcquirerResult:
        self._reachable()
        return self._reply(Op.VOID, _decide_command(request))

    def refund(self, request: CommandRequest) -> AcquirerResult:
        self._reachable()
        return self._reply(Op.REFUND, _decide_command(request))

    def inquire(self, reference: str) -> AcquirerResult | None:
        self._reachable()
        found = Op.objects.filter(pk=reference).first()
        self._travel("inquire")
        return _answer(found) if found is not None else None
