"""Domain signals of the ledger.

``ledger_changed`` is sent for every insert and every state change of an audited ledger
object (merchant, card token, transaction, journal entry), **from inside the database
transaction** that makes the change. The outbox connects a receiver that writes its rows in
that same transaction; a receiver that raises aborts the change. The change's audit entry
is not a receiver's business: ``insert_audited`` and ``update_entry``/``changed_audited``
compute it before the write (its hash goes into the row's ``audit_hash`` in the same
statement) and stage it for the transaction's insert (``payflow.platform.trail``).

Keyword arguments: ``instance`` (the model instance after the change), ``action``
(``"insert"`` or ``"update"``), ``old_values`` (dict or ``None`` for an insert),
``new_values`` (dict), ``event_type`` (e.g. ``"payment.captured"``). Values are JSON-safe
snapshots from ``instance.snapshot()``: never a PAN, a CVC, a ciphertext or a key.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, router, transaction
from django.dispatch import Signal

from payflow.platform import caches, trail

ledger_changed = Signal()


class SignalOutsideTransaction(RuntimeError):
    """A ledger change was signalled outside a transaction: its records could be lost."""


def _check_in_transaction(instance: Any, event_type: str) -> str:
    alias = router.db_for_write(type(instance), instance=instance)
    if not connections[alias].in_atomic_block:
        raise SignalOutsideTransaction(f"{event_type} must be sent inside a transaction")
    return alias


def _fill_automatic_fields(instance: Any) -> None:
    # auto_now(_add) fields get their value at save(); the entry needs it before.
    for field in instance._meta.concrete_fields:
        automatic = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        if automatic and getattr(instance, field.attname) is None:
            setattr(instance, field.attname, field.pre_save(instance, add=True))


def insert_audited(
    instance: Any, *, event_type: str, extra_values: dict[str, Any] | None = None
) -> Any:
    """Insert ``instance`` (an ``AuditedModel``) with its first audit entry, inside the
    caller's transaction, and signal ``ledger_changed``: the entry (genesis ``prev_hash``)
    is computed first, so the row is inserted already naming it in ``audit_hash``.
    ``extra_values`` join the snapshot in the entry (a journal entry's lines)."""
    alias = _check_in_transaction(instance, event_type)
    _fill_automatic_fields(instance)
    values = instance.snapshot()
    if extra_values:
        values.update(extra_values)
    entry = trail.prepare(
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        prev_hash=trail.GENESIS_HASH,
        action="insert",
        event_type=event_type,
        old_values=None,
        new_values=values,
    )
    instance.audit_hash = entry.hash
    # raw: store the values as they are (auto_now_add would take a new clock reading at
    # save time, and the row would no longer equal the entry that records it).
    instance.save_base(raw=True, force_insert=True, using=alias)
    trail.stage(entry, using=alias)
    _send(instance, action="insert", event_type=event_type, old_values=None, new_values=values)
    return instance


def update_entry(
    instance: Any, *, event_type: str, old_values: dict[str, Any], new_values: dict[str, Any]
) -> trail.Entry:
    """The audit entry for changing ``instance`` (as read: ``audit_hash`` names its latest
    entry) from ``old_values`` to ``new_values``; its ``hash`` goes into the same
    compare-and-set ``UPDATE`` as the change, then ``changed_audited`` stages it."""
    _check_in_transaction(instance, event_type)
    return trail.prepare(
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        prev_hash=instance.audit_hash or trail.GENESIS_HASH,
        action="update",
        event_type=event_type,
        old_values=old_values,
        new_values=new_values,
    )


def changed_audited(
    instance: Any,
    entry: trail.Entry,
    *,
    old_values: dict[str, Any],
    new_values: dict[str, Any],
) -> None:
    """After the compare-and-set ``UPDATE`` succeeded: stage the entry, signal the change."""
    alias = router.db_for_write(type(instance), instance=instance)
    instance.audit_hash = entry.hash
    trail.stage(entry, using=alias)
    _send(
        instance,
        action="update",
        event_type=entry.event_type,
        old_values=old_values,
        new_values=new_values,
    )


def _send(
    instance: Any,
    *,
    action: str,
    event_type: str,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any],
) -> None:
    ledger_changed.send(
        sender=type(instance),
        instance=instance,
        action=action,
        event_type=event_type,
        old_values=old_values,
        new_values=new_values,
    )


def forget_cached(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Receiver of ``ledger_changed``: the process caches (``payflow.platform.caches``) drop
    what they read from the changed row, now and again once the change has committed (a
    request that re-read it in between cached the old row)."""
    label, pk = sender._meta.label_lower, instance.pk
    caches.forget(label, pk)
    transaction.on_commit(lambda: caches.forget(label, pk), using=router.db_for_write(sender))
