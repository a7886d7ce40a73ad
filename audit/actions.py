"""The audit vocabulary: every ``action`` an audit row can carry, and the event types of the
rows that are not ledger changes, listed once.

A ledger change's row has the ledger's action (``insert``/``update``/``delete``) and one of
its ``ledger.events.EventType``; the rows the audit app and the composition root write for
themselves are listed in ``AUDIT_EVENTS``. ``audit_record`` refuses an action not listed
here (``UnknownAction``), so a new kind of row cannot reach the chain, and ``audit.events``,
without being added here; ``outbox/schemas/audit_entry.json`` and ``docs/events.md`` are
checked against this list (``tests/outbox/test_registries.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class UnknownAction(ValueError):
    """``audit_record`` was given an action that is not an ``Action``."""


class Action(models.TextChoices):
    INSERT = "insert", "a row was created"
    UPDATE = "update", "a row was changed"
    DELETE = "delete", "a row was removed (merged duplicates)"
    OPERATOR_ACTION = (
        "operator_action",
        "an operator asked for an action in the admin; `new_values` holds what was asked",
    )
    PURGE = "purge", "archived audit segments past retention were purged"
    MIGRATE = "migrate", "the lane trail was moved into the log (audit migration 0008)"
    LOGIN_FAILED = "login_failed", "an admin login failed or was refused while locked"
    ERASE = "erase", "a data subject's key was destroyed: its personal data reads as erased"

    @classmethod
    def checked(cls, action: str) -> Action:
        """The member named ``action``; ``UnknownAction`` if there is none."""
        try:
            return cls(action)
        except ValueError:
            raise UnknownAction(
                f"unknown audit action {action!r}: add it to audit.actions.Action"
            ) from None


@dataclass(frozen=True)
class AuditEvent:
    """An audit row that is not a ledger change: its event type and its action."""

    event_type: str
    action: Action
    when: str


#: What ``payflow.operations`` records as ``operator.<name>`` (one row per action asked).
OPERATOR_ACTIONS = (
    "payment_capture",
    "payment_cancel",
    "refund_create",
    "chargeback_create",
    "outbox_requeue",
    "api_key_revoke",
    "api_key_issue",
    "merchant_create",
    "merchant_suspend",
    "merchant_reactivate",
    "job_pause",
    "job_resume",
    "job_run_now",
    "cardholder_erase",
    "user_erase",
    "webhook_resend",
    "webhook_endpoint_enable",
)

AUDIT_EVENTS: dict[str, AuditEvent] = {
    event.event_type: event
    for event in (
        AuditEvent(
            "audit.retention_purged",
            Action.PURGE,
            "segments past `AUDIT_RETENTION` were purged (`audit/retention.py`)",
        ),
        AuditEvent(
            "audit.lanes_migrated",
            Action.MIGRATE,
            "the lane-based trail was moved into the log; `new` records how it ended",
        ),
        AuditEvent(
            "audit.legal_hold_placed",
            Action.INSERT,
            "a legal hold keeps an object's rows past retention",
        ),
        AuditEvent(
            "audit.legal_hold_released",
            Action.UPDATE,
            "a legal hold was released",
        ),
        AuditEvent(
            "data_subject.erased",
            Action.ERASE,
            "a data subject was erased: its key destroyed (`audit/subjects.py`)",
        ),
        AuditEvent(
            "webhook_endpoint.created",
            Action.INSERT,
            "a merchant registered a webhook endpoint (`payflow/webhooks/endpoints.py`; never"
            " its secret)",
        ),
        AuditEvent(
            "webhook_endpoint.updated",
            Action.UPDATE,
            "a webhook endpoint's URL, events, description or state changed (deleted, disabled"
            " by the dispatcher after the retry span, enabled again)",
        ),
        AuditEvent(
            "webhook_endpoint.secret_rolled",
            Action.UPDATE,
            "a webhook endpoint's signing secret was replaced (`new` holds the grace period,"
            " never a secret)",
        ),
        AuditEvent(
            "user.login_failed",
            Action.LOGIN_FAILED,
            "a failed or refused admin login (`payflow/login_guard.py`)",
        ),
        *(
            AuditEvent(
                f"operator.{name}",
                Action.OPERATOR_ACTION,
                f"an operator asked for `{name}` (`payflow/operations.py`)",
            )
            for name in OPERATOR_ACTIONS
        ),
    )
}
