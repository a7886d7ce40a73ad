"""Write guards for audited models (the platform layer: imports no app).

``QuerySet.update()``, ``delete()``, ``bulk_create()`` and ``bulk_update()`` send no
signals, so a change made through them would leave no audit row and no outbox event.
Audited models use ``GuardedQuerySet``/``GuardedModel``: those calls, a plain ``save()`` of
an existing row and ``Model.delete()`` raise ``UnsanctionedWrite`` unless the code runs
inside ``sanctioned_writes()``, which only the services' compare-and-set helpers enter
(and they send the domain signal themselves).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import models

_sanctioned: contextvars.ContextVar[bool] = contextvars.ContextVar("sanctioned", default=False)


class UnsanctionedWrite(RuntimeError):
    """A write to an audited model bypassed the services (no audit row would be written)."""


@contextlib.contextmanager
def sanctioned_writes() -> Iterator[None]:
    """Allow guarded bulk writes in this block. For services' own helpers only."""
    token = _sanctioned.set(True)
    try:
        yield
    finally:
        _sanctioned.reset(token)


def _refuse(what: str, model: type[models.Model]) -> None:
    if not _sanctioned.get():
        raise UnsanctionedWrite(
            f"{what} on {model.__name__} bypasses the audit trail; use the ledger services"
        )


class GuardedQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        _refuse("QuerySet.update()", self.model)
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        _refuse("QuerySet.delete()", self.model)
        return super().delete()

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list:
        _refuse("QuerySet.bulk_create()", self.model)
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        _refuse("QuerySet.bulk_update()", self.model)
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("QuerySet.update_or_create()", self.model)
        return super().update_or_create(*args, **kwargs)


def json_safe(value: Any) -> Any:
    """A value as it goes into audit rows and events: str for ids, ISO UTC for times."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, models.Model):
        return json_safe(value.pk)
    return value


class SnapshotMixin:
    """``snapshot()``: the ``audit_fields`` of a row as a JSON-safe dict (no secrets)."""

    audit_fields: tuple[str, ...] = ()

    def snapshot(self) -> dict[str, Any]:
        values = {}
        for name in self.audit_fields:
            field = self._meta.get_field(name)  # type: ignore[attr-defined]
            values[name] = json_safe(getattr(self, field.attname))
        return values


class GuardedModel(SnapshotMixin, models.Model):
    """A model whose rows are inserted by services and changed only by compare-and-set."""

    objects = GuardedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _refuse("save() of an existing row", type(self))
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("delete()", type(self))
        return super().delete(*args, **kwargs)


class AuditedModel(GuardedModel):
    """A guarded model whose every change is an audit entry: ``audit_hash`` is the hash of
    the row's latest entry, written by the same statement as the change
    (``payflow.platform.trail``); reconciliation checks it against the log."""

    audit_hash = models.CharField(max_length=64, default="", editable=False)

    class Meta:
        abstract = True
