"""Who is acting, from where: the context every audit row records.

A contextvar holds it for the current request or task. ``AuditContextMiddleware`` sets the
request's IP, user agent, request id and (for a logged-in operator) the user; the API key
authentication sets the API key as actor; Celery tasks carry the context of whoever queued
them in their headers (``payflow.celery.ContextTask``) and, when beat started them, act as
the system task itself. Management commands bind a ``command:<name>`` actor.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class AuditContext:
    actor_type: str = ""  # "user", "api_key", "system"
    actor_id: str = ""
    actor_label: str = ""
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    task_id: str = ""
    reason: str = ""
    # whose personal data ``reason`` is, when it is about someone (an operator's reason for
    # acting on a cardholder's payment: ``payflow.platform.personal``); else the actor's
    reason_subject: str = ""
    merchant_id: str = ""  # the merchant an API request acts for (logs; not an audit field)

    @property
    def has_actor(self) -> bool:
        return bool(self.actor_type and self.actor_id)

    def as_headers(self) -> dict[str, str]:
        return {f"payflow_{k}": v for k, v in dataclasses.asdict(self).items() if v}

    @classmethod
    def from_headers(cls, headers: dict[str, Any]) -> AuditContext:
        names = {field.name for field in dataclasses.fields(cls)}
        values = {
            key.removeprefix("payflow_"): str(value)
            for key, value in (headers or {}).items()
            if key.startswith("payflow_") and key.removeprefix("payflow_") in names
        }
        return cls(**values)


_context: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "audit_context",
    default=AuditContext(),  # noqa: B039 - frozen, immutable
)


def current() -> AuditContext:
    return _context.get()


@contextlib.contextmanager
def bind(**changes: str) -> Iterator[AuditContext]:
    """Extend the current context for the block (e.g. ``bind(reason="customer asked")``)."""
    token = _context.set(dataclasses.replace(_context.get(), **changes))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


def set_actor(actor_type: str, actor_id: str, actor_label: str = "") -> None:
    """Name the actor for the rest of the current request or task."""
    _context.set(
        dataclasses.replace(
            _context.get(), actor_type=actor_type, actor_id=actor_id, actor_label=actor_label
        )
    )


def set_merchant(merchant_id: str) -> None:
    """Name the merchant the rest of the current request acts for (shown in the logs)."""
    _context.set(dataclasses.replace(_context.get(), merchant_id=merchant_id))


def system_actor(name: str) -> dict[str, str]:
    return {"actor_type": "system", "actor_id": name, "actor_label": name}


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def replaced(context: AuditContext) -> Iterator[AuditContext]:
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)
