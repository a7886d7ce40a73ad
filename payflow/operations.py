"""Operators' actions (the admin): the services the API and tasks call, with a reason.

Each function is one operator action (``@audited_action``): one transaction
(``payflow.platform.db.atomic``; the ledger and outbox services it calls run inside it as
savepoints). The operator is the actor already named by the request
(``AuditContextMiddleware``); the reason is bound to the audit context for the whole
transaction, so every audit row the change writes carries it. Each action also writes one
``operator_action`` audit row on the object (what was asked, with its parameters), in the
same transaction: requeueing an outbox event or revoking a key that is already revoked
changes no ledger row, and must still leave a trace of who asked for it and why. That row
is chained on the operator-action object of its target (``audit.objects.
operator_object_type``), not on the target itself: the target's row names its own latest
entry, which the action row must not displace.

Refusals are the services' own exceptions (``ledger.exceptions.LedgerError``,
``outbox.services.NotDead``, ``payflow.jobs.JobPauseRefused``, ``OperatorActionRefused``);
nothing is written when one is raised.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db.models import Q

from audit.actions import Action
from audit.objects import operator_object_type
from audit.services import audit_record
from audit.subjects import subject_erase
from ledger.models import ApiKey, CardToken, Merchant, Transaction
from ledger.services.api_keys import IssuedKey, api_key_create, api_key_revoke
from ledger.services.merchants import merchant_create, merchant_reactivate, merchant_suspend
from ledger.services.payments import payment_cancel, payment_capture
from ledger.services.personal_data import (
    cardholder_anonymise,
    cardholder_subject,
)
from ledger.services.refunds import chargeback_create, refund_create
from outbox.models import OutboxEvent
from outbox.services import outbox_requeue
from payflow.jobs import RunRequest, job_pause, job_resume, job_run_request
from payflow.models import IdempotencyRecord, JobRun, WebhookDelivery, WebhookEndpoint
from payflow.platform import context, db, personal
from payflow.platform.personal import person_subject
from payflow.webhooks.endpoints import webhook_delivery_resend, webhook_endpoint_update

P = ParamSpec("P")
T = TypeVar("T")

REASON_MAX_LENGTH = 500


class OperatorActionRefused(Exception):
    """The action was refused before any service ran (no reason, key already revoked)."""


def _reason(reason: str) -> str:
    cleaned = " ".join((reason or "").split())
    if not cleaned:
        raise OperatorActionRefused("a reason is required")
    return cleaned[:REASON_MAX_LENGTH]


@dataclass(frozen=True)
class ActionPlan(Generic[T]):
    """An operator action, ready to run: the service call and the audit row it leaves."""

    name: str  # the row's event_type is ``operator.<name>``
    object_type: str
    object_id: Any
    _: KW_ONLY
    perform: Callable[[], T]
    details: dict[str, Any]
    # the reason is about the target (its data subject's); not for an erasure, whose
    # reason must stay readable after the subject's key is gone
    reason_about_target: bool = True


def audited_action(plan: Callable[P, ActionPlan[T]]) -> Callable[P, T]:
    """Decorator: ``plan`` (called with the cleaned ``reason``) finds what the action is
    on and says what it does; the decorated function runs it as one operator action.

    One transaction (``db.atomic``, retried whole): an empty reason is refused before
    anything is read; then, with the reason bound to the audit context, ``plan`` and its
    service run and the ``operator_action`` row (``operator.<name>``, the operator as
    actor, the reason, the parameters) is written on the object's operator-action chain
    (``operator:<type>``, same id) after the service's own rows. The change and its row
    commit together or not at all.
    """

    @functools.wraps(plan)
    @db.atomic
    def action(*args: P.args, **kwargs: P.kwargs) -> T:
        reason = _reason(kwargs["reason"])  # type: ignore[arg-type]
        with context.bind(reason=reason):
            planned = plan(*args, **{**kwargs, "reason": reason})  # type: ignore[arg-type]
            # The reason is about the target: its data subject's (a cardholder's), if it
            # has one, on every entry the action writes (the refund, its journal entry,
            # its command, the action row), so erasing the subject erases it too.
            with context.bind(reason_subject=_subject_of(planned)):
                result = planned.perform()
                audit_record(
                    object_type=operator_object_type(planned.object_type),
                    object_id=str(planned.object_id),
                    action=Action.OPERATOR_ACTION,
                    event_type=f"operator.{planned.name}",
                    old_values=None,
                    new_values={"action": planned.name, **planned.details},
                )
        return result

    return action


def _subject_of(planned: ActionPlan[Any]) -> str:
    """Whose personal data the action's reason is: the target's subject's; once that
    subject was erased, the operator's who writes it (an erased subject takes no new
    data, and a refund's reason must stay readable for whoever reviews the refund)."""
    registration = personal.registered().get(planned.object_type)
    if registration is None or not planned.reason_about_target:
        return ""
    subject = registration.subject_of(str(planned.object_id), {}) or ""
    if subject and personal.key_store().erased(subject):
        actor = context.current()
        return person_subject(actor.actor_id) if actor.actor_type == "user" else ""
    return subject


def _payment(payment_id: Any) -> Transaction:
    return Transaction.objects.get(pk=payment_id)


@audited_action
def operator_payment_capture(
    *, payment_id: Any, amount: int | None, expected_version: int, reason: str
) -> ActionPlan[Transaction]:
    """Capture (``payment_capture``) as the operator; refused if the payment changed since
    ``expected_version`` (``ConcurrentUpdate``). Audit: the capture's rows + one action row."""
    payment = _payment(payment_id)
    return ActionPlan(
        "payment_capture",
        "ledger.transaction",
        payment.pk,
        perform=lambda: payment_capture(
            payment=payment, amount=amount, expected_version=expected_version
        ),
        details={"amount": amount, "expected_version": expected_version},
    )


@audited_action
def operator_payment_cancel(
    *, payment_id: Any, expected_version: int, reason: str
) -> ActionPlan[Transaction]:
    """Void an authorization (``payment_cancel``) as the operator, at ``expected_version``."""
    payment = _payment(payment_id)
    return ActionPlan(
        "payment_cancel",
        "ledger.transaction",
        payment.pk,
        perform=lambda: payment_cancel(payment=payment, expected_version=expected_version),
        details={"expected_version": expected_version},
    )


@audited_action
def operator_refund_create(
    *, payment_id: Any, amount: int | None, expected_version: int, reason: str
) -> ActionPlan[Transaction]:
    """Refund (``refund_create``) as the operator; the reason is also the refund's reason."""
    payment = _payment(payment_id)
    return ActionPlan(
        "refund_create",
        "ledger.transaction",
        payment.pk,
        perform=lambda: refund_create(
            payment=payment, amount=amount, reason=reason, expected_version=expected_version
        ),
        details={"amount": amount, "expected_version": expected_version},
    )


@audited_action
def operator_chargeback_create(
    *, payment_id: Any, amount: int | None, expected_version: int, reason: str
) -> ActionPlan[Transaction]:
    """Book a chargeback (``chargeback_create``) as the operator, at ``expected_version``."""
    payment = _payment(payment_id)
    return ActionPlan(
        "chargeback_create",
        "ledger.transaction",
        payment.pk,
        perform=lambda: chargeback_create(
            payment=payment, amount=amount, reason=reason, expected_version=expected_version
        ),
        details={"amount": amount, "expected_version": expected_version},
    )


@audited_action
def operator_outbox_requeue(*, event_id: Any, reason: str) -> ActionPlan[OutboxEvent]:
    """Requeue a dead event (``outbox_requeue``; ``NotDead`` if it is not dead). The
    requeue changes no ledger row, so the action row is its only audit record."""
    event = OutboxEvent.objects.get(pk=event_id)
    return ActionPlan(
        "outbox_requeue",
        "outbox.outboxevent",
        event.pk,
        perform=lambda: outbox_requeue(event_id=event.pk),
        details={
            "event_type": event.event_type,
            "aggregate_id": event.aggregate_id,
            "sequence": event.sequence,
            "attempts": event.attempts,
            "last_error": event.last_error[:200],
        },
    )


@audited_action
def operator_api_key_revoke(*, api_key_id: Any, reason: str) -> ActionPlan[ApiKey]:
    """Revoke a key (``api_key_revoke``); refused when it is already revoked. Audit: the
    key's ``api_key.revoked`` row and the action row."""
    api_key = ApiKey.objects.get(pk=api_key_id)
    if not api_key.is_active:
        raise OperatorActionRefused(f"this key was already revoked at {api_key.revoked_at:%c}")
    return ActionPlan(
        "api_key_revoke",
        "ledger.apikey",
        api_key.pk,
        perform=lambda: api_key_revoke(api_key=api_key),
        details={"prefix": api_key.prefix, "merchant": str(api_key.merchant_id)},
    )


@audited_action
def operator_api_key_issue(
    *, merchant_id: Any, name: str, mode: str, reason: str
) -> ActionPlan[IssuedKey]:
    """Issue a key (``api_key_create``); the secret is in the result and nowhere else."""
    merchant = Merchant.objects.get(pk=merchant_id)
    return ActionPlan(
        "api_key_issue",
        "ledger.merchant",
        merchant.pk,
        perform=lambda: api_key_create(merchant=merchant, name=name, mode=mode),
        details={"name": name[:100], "mode": mode},
    )


@audited_action
def operator_merchant_create(
    *, name: str, default_currency: str, settlement_delay_days: int, reason: str
) -> ActionPlan[Merchant]:
    """Create a merchant (``merchant_create``) as the operator."""
    # Created here, not in ``perform``: the action row is on the merchant, so it needs its id.
    merchant = merchant_create(
        name=name, default_currency=default_currency, settlement_delay_days=settlement_delay_days
    )
    return ActionPlan(
        "merchant_create",
        "ledger.merchant",
        merchant.pk,
        perform=lambda: merchant,
        details={"name": merchant.name},
    )


@audited_action
def operator_merchant_set_active(
    *, merchant_id: Any, active: bool, reason: str
) -> ActionPlan[Merchant]:
    """Suspend (``merchant_suspend``) or reactivate (``merchant_reactivate``) a merchant."""
    merchant = Merchant.objects.get(pk=merchant_id)
    service = merchant_reactivate if active else merchant_suspend
    return ActionPlan(
        "merchant_reactivate" if active else "merchant_suspend",
        "ledger.merchant",
        merchant.pk,
        perform=lambda: service(merchant=merchant),
        details={"status_before": merchant.status},
    )


@audited_action
def operator_job_set_paused(*, job: str, paused: bool, reason: str) -> ActionPlan[JobRun]:
    """Pause or resume a scheduled job (``payflow.jobs``): while paused, beat's runs of it
    are skipped. ``JobPauseRefused`` for an unknown job, or one already paused (resumed).
    No ledger row changes, so the action row is the audit record: who, when and why."""
    current = context.current()
    return ActionPlan(
        "job_pause" if paused else "job_resume",
        "payflow.jobrun",
        job,
        perform=lambda: (
            job_pause(job=job, by=current.actor_label or current.actor_id, reason=reason)
            if paused
            else job_resume(job=job)
        ),
        details={"job": job},
    )


@audited_action
def operator_job_run_now(*, job: str, reason: str) -> ActionPlan[RunRequest]:
    """Ask for one run of a scheduled job now (audited: who, when, why). Returns what to
    queue; the caller queues it with ``jobs.job_run_now_send`` once this transaction has
    committed (no message is sent from inside a transaction). ``JobPauseRefused`` for a
    name that is not a scheduled job. The run is recorded with the operator who asked."""
    request = job_run_request(job)
    return ActionPlan(
        "job_run_now",
        "payflow.jobrun",
        job,
        perform=lambda: request,
        details={"job": job, "task": request.task},
    )


@audited_action
def operator_webhook_resend(*, delivery_id: Any, reason: str) -> ActionPlan[WebhookDelivery]:
    """Deliver one event to one endpoint again (``webhook_resend``): pending now, with a
    fresh retry span; the dispatcher sends it (no HTTP call here)."""
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    return ActionPlan(
        "webhook_resend",
        "payflow.webhookdelivery",
        delivery.pk,
        perform=lambda: webhook_delivery_resend(delivery=delivery),
        details={
            "endpoint": str(delivery.endpoint_id),
            "event_id": str(delivery.event_id),
            "event_type": delivery.event_type,
            "status": delivery.status,
            "attempts": delivery.attempts,
        },
    )


@audited_action
def operator_webhook_endpoint_enable(
    *, endpoint_id: Any, reason: str
) -> ActionPlan[WebhookEndpoint]:
    """Enable an endpoint the dispatcher disabled (``webhook_endpoint_enable``): its owed
    deliveries resume. Refused for an enabled or deleted endpoint."""
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    if endpoint.deleted or endpoint.status == WebhookEndpoint.Status.ENABLED:
        raise OperatorActionRefused("this endpoint is enabled already, or deleted")
    return ActionPlan(
        "webhook_endpoint_enable",
        "payflow.webhookendpoint",
        endpoint.pk,
        perform=lambda: webhook_endpoint_update(endpoint=endpoint, disabled=False),
        details={"url": endpoint.url[:200], "disabled_reason": endpoint.disabled_reason},
    )


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: the subject whose key was destroyed, the rows anonymised."""

    subject: str
    anonymised: dict[str, int]


def _erase_replays(object_ids: list[Any]) -> int:
    # A stored first response may hold the personal data: it keeps only the object's id,
    # so a retry with the same Idempotency-Key still replays (and never runs again).
    records = IdempotencyRecord.objects.filter(object_id__in=object_ids).exclude(response_body=None)
    erased = 0
    for record in records.only("pk", "response_body"):
        body = record.response_body if isinstance(record.response_body, dict) else {}
        kept = {name: body[name] for name in ("id", "object", "livemode") if name in body}
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            response_body={**kept, "personal_data_erased": True}
        )
        erased += 1
    return erased


@audited_action
def operator_cardholder_erase(*, token_id: Any, reason: str) -> ActionPlan[Erasure]:
    """Erase a cardholder (GDPR art. 17): the personal data of the card ``token_id``.

    In one transaction: the free texts of every transaction the card paid (and of their
    refunds and chargebacks) and the token's fingerprint are emptied, its vault ciphertext
    (PAN and holder name) wiped (``cardholder_anonymise``), stored first responses cut to
    the object's id, and the subject's key destroyed (``subject_erase``), so what the
    audit log and the published events hold sealed for the cardholder reads as erased.
    The entries, the log's proofs, old bundles and archived segments still verify."""
    token = CardToken.objects.get(pk=token_id)

    def perform() -> Erasure:
        anonymised = cardholder_anonymise(token)
        paid = Transaction.objects.filter(
            Q(card_token=token) | Q(parent__card_token=token)
        ).values_list("pk", flat=True)
        anonymised["stored_responses"] = _erase_replays([token.pk, *paid])
        subject = cardholder_subject(token.pk)
        subject_erase(subject, anonymised=anonymised)
        return Erasure(subject, anonymised)

    return ActionPlan(
        "cardholder_erase",
        "ledger.cardtoken",
        token.pk,
        perform=perform,
        details={},
        reason_about_target=False,
    )


@audited_action
def operator_user_erase(*, user_id: Any, reason: str) -> ActionPlan[Erasure]:
    """Erase a person who used the admin (an operator or auditor who left): their account
    is deactivated and anonymised (name, e-mail, username), and their key destroyed, so
    the addresses, browsers, reasons and name their audit entries hold sealed read as
    erased. Refused for the operator asking (``OperatorActionRefused``)."""
    user = get_user_model().objects.get(pk=user_id)
    if str(user.pk) == context.current().actor_id:
        raise OperatorActionRefused("you cannot erase yourself")

    def perform() -> Erasure:
        get_user_model().objects.filter(pk=user.pk).update(
            username=f"erased-{user.pk}",
            first_name="",
            last_name="",
            email="",
            is_active=False,
            password=UNUSABLE_PASSWORD_PREFIX,  # no password opens it
        )
        # the name a paused job shows (payflow.jobs records who paused it)
        paused = JobRun.objects.filter(paused_by=user.get_username()).update(
            paused_by=f"erased-{user.pk}"
        )
        subject = person_subject(str(user.pk))
        anonymised = {"users": 1, "paused_jobs": paused}
        subject_erase(subject, anonymised=anonymised)
        return Erasure(subject, anonymised)

    return ActionPlan(
        "user_erase", "auth.user", user.pk, perform=perform, details={}, reason_about_target=False
    )
