"""Operators' actions (the admin): the services the API and tasks call, with a reason.

Each function is one transaction (``payflow.platform.db.atomic``; the ledger and outbox services it
calls run inside it as savepoints). The operator is the actor already named by the request
(``AuditContextMiddleware``); the reason is bound to the audit context for the whole
transaction, so every audit row the change writes carries it. Each action also writes one
``operator_action`` audit row on the object (what was asked, with its parameters), in the
same transaction: requeueing an outbox event or revoking a key that is already revoked
changes no ledger row, and must still leave a trace of who asked for it and why.

Refusals are the services' own exceptions (``ledger.exceptions.LedgerError``,
``outbox.services.NotDead``, ``payflow.jobs.JobPauseRefused``, ``OperatorActionRefused``);
nothing is written when one is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from audit.services import audit_record
from ledger.models import ApiKey, Merchant, Transaction
from ledger.services.api_keys import IssuedKey, api_key_create, api_key_revoke
from ledger.services.merchants import merchant_create, merchant_reactivate, merchant_suspend
from ledger.services.payments import payment_cancel, payment_capture
from ledger.services.refunds import chargeback_create, refund_create
from outbox.models import OutboxEvent
from outbox.services import outbox_requeue
from payflow.jobs import job_pause, job_resume
from payflow.models import JobRun
from payflow.platform import context, db

T = TypeVar("T")

REASON_MAX_LENGTH = 500


class OperatorActionRefused(Exception):
    """The action was refused before any service ran (no reason, key already revoked)."""


def _reason(reason: str) -> str:
    cleaned = " ".join((reason or "").split())
    if not cleaned:
        raise OperatorActionRefused("a reason is required")
    return cleaned[:REASON_MAX_LENGTH]


def _audited(
    name: str, object_type: str, object_id: Any, reason: str, details: dict, work: Callable[[], T]
) -> T:
    """Run ``work`` with the reason bound, then write the ``operator_action`` row.

    Called inside the action's transaction: the row and the change commit together.
    """
    with context.bind(reason=reason):
        result = work()
        audit_record(
            object_type=object_type,
            object_id=str(object_id),
            action="operator_action",
            event_type=f"operator.{name}",
            old_values=None,
            new_values={"action": name, **details},
        )
    return result


def _payment(payment_id: Any) -> Transaction:
    return Transaction.objects.get(pk=payment_id)


@db.atomic
def operator_payment_capture(
    *, payment_id: Any, amount: int | None, expected_version: int, reason: str
) -> Transaction:
    """Capture (``payment_capture``) as the operator; refused if the payment changed since
    ``expected_version`` (``ConcurrentUpdate``). Audit: the capture's rows + one action row."""
    reason = _reason(reason)
    payment = _payment(payment_id)
    return _audited(
        "payment_capture",
        "ledger.transaction",
        payment.pk,
        reason,
        {"amount": amount, "expected_version": expected_version},
        lambda: payment_capture(payment=payment, amount=amount, expected_version=expected_version),
    )


@db.atomic
def operator_payment_cancel(*, payment_id: Any, expected_version: int, reason: str) -> Transaction:
    """Void an authorization (``payment_cancel``) as the operator, at ``expected_version``."""
    reason = _reason(reason)
    payment = _payment(payment_id)
    return _audited(
        "payment_cancel",
        "ledger.transaction",
        payment.pk,
        reason,
        {"expected_version": expected_version},
        lambda: payment_cancel(payment=payment, expected_version=expected_version),
    )


@db.atomic
def operator_refund_create(
    *, payment_id: Any, amount: int | None, expected_version: int, reason: str
) -> Transaction:
    """Refund (``refund_create``) as the operator; the reason is also the refund's reason."""
    reason = _reason(reason)
    payment = _payment(payment_id)
    return _audited(
        "refund_create",
        "ledger.transaction",
        payment.pk,
        reason,
        {"amount": amount, "expected_version": expected_version},
        lambda: refund_create(
            payment=payment, amount=amount, reason=reason, expected_version=expected_version
        ),
    )


@db.atomic
def operator_chargeback_create(
    *, payment_id: Any, amount: int | None, expected_version: int, reason: str
) -> Transaction:
    """Book a chargeback (``chargeback_create``) as the operator, at ``expected_version``."""
    reason = _reason(reason)
    payment = _payment(payment_id)
    return _audited(
        "chargeback_create",
        "ledger.transaction",
        payment.pk,
        reason,
        {"amount": amount, "expected_version": expected_version},
        lambda: chargeback_create(
            payment=payment, amount=amount, reason=reason, expected_version=expected_version
        ),
    )


@db.atomic
def operator_outbox_requeue(*, event_id: Any, reason: str) -> OutboxEvent:
    """Requeue a dead event (``outbox_requeue``; ``NotDead`` if it is not dead). The
    requeue changes no ledger row, so the action row is its only audit record."""
    reason = _reason(reason)
    event = OutboxEvent.objects.get(pk=event_id)
    return _audited(
        "outbox_requeue",
        "outbox.outboxevent",
        event.pk,
        reason,
        {
            "event_type": event.event_type,
            "aggregate_id": event.aggregate_id,
            "sequence": event.sequence,
            "attempts": event.attempts,
            "last_error": event.last_error[:200],
        },
        lambda: outbox_requeue(event_id=event.pk),
    )


@db.atomic
def operator_api_key_revoke(*, api_key_id: Any, reason: str) -> ApiKey:
    """Revoke a key (``api_key_revoke``); refused when it is already revoked. Audit: the
    key's ``api_key.revoked`` row and the action row."""
    reason = _reason(reason)
    api_key = ApiKey.objects.get(pk=api_key_id)
    if not api_key.is_active:
        raise OperatorActionRefused(f"this key was already revoked at {api_key.revoked_at:%c}")
    return _audited(
        "api_key_revoke",
        "ledger.apikey",
        api_key.pk,
        reason,
        {"prefix": api_key.prefix, "merchant": str(api_key.merchant_id)},
        lambda: api_key_revoke(api_key=api_key),
    )


@db.atomic
def operator_api_key_issue(*, merchant_id: Any, name: str, mode: str, reason: str) -> IssuedKey:
    """Issue a key (``api_key_create``); the secret is in the result and nowhere else."""
    reason = _reason(reason)
    merchant = Merchant.objects.get(pk=merchant_id)
    return _audited(
        "api_key_issue",
        "ledger.merchant",
        merchant.pk,
        reason,
        {"name": name[:100], "mode": mode},
        lambda: api_key_create(merchant=merchant, name=name, mode=mode),
    )


@db.atomic
def operator_merchant_create(
    *, name: str, default_currency: str, settlement_delay_days: int, reason: str
) -> Merchant:
    """Create a merchant (``merchant_create``) as the operator."""
    reason = _reason(reason)
    with context.bind(reason=reason):
        merchant = merchant_create(
            name=name,
            default_currency=default_currency,
            settlement_delay_days=settlement_delay_days,
        )
    return _audited(
        "merchant_create",
        "ledger.merchant",
        merchant.pk,
        reason,
        {"name": merchant.name},
        lambda: merchant,
    )


@db.atomic
def operator_merchant_set_active(*, merchant_id: Any, active: bool, reason: str) -> Merchant:
    """Suspend (``merchant_suspend``) or reactivate (``merchant_reactivate``) a merchant."""
    reason = _reason(reason)
    merchant = Merchant.objects.get(pk=merchant_id)
    service = merchant_reactivate if active else merchant_suspend
    return _audited(
        "merchant_reactivate" if active else "merchant_suspend",
        "ledger.merchant",
        merchant.pk,
        reason,
        {"status_before": merchant.status},
        lambda: service(merchant=merchant),
    )


@db.atomic
def operator_job_set_paused(*, job: str, paused: bool, reason: str) -> JobRun:
    """Pause or resume a scheduled job (``payflow.jobs``): while paused, beat's runs of it
    are skipped. ``JobPauseRefused`` for an unknown job, or one already paused (resumed).
    No ledger row changes, so the action row is the audit record: who, when and why."""
    reason = _reason(reason)
    current = context.current()
    return _audited(
        "job_pause" if paused else "job_resume",
        "payflow.jobrun",
        job,
        reason,
        {"job": job},
        lambda: (
            job_pause(job=job, by=current.actor_label or current.actor_id, reason=reason)
            if paused
            else job_resume(job=job)
        ),
    )
