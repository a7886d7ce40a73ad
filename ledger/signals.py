"""Domain signals of the ledger.

``ledger_changed`` is sent for every insert and every state change of an audited ledger
object (merchant, card token, transaction, journal entry), **from inside the database
transaction** that makes the change. The audit and outbox apps connect receivers that
write their rows in that same transaction; a receiver that raises aborts the change.

Keyword arguments: ``instance`` (the model instance after the change), ``action``
(``"insert"`` or ``"update"``), ``old_values`` (dict or ``None`` for an insert),
``new_values`` (dict), ``event_type`` (e.g. ``"payment.captured"``). Values are JSON-safe
snapshots from ``instance.snapshot()``: never a PAN, a CVC, a ciphertext or a key.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.dispatch import Signal

ledger_changed = Signal()


class SignalOutsideTransaction(RuntimeError):
    """A ledger change was signalled outside a transaction: its records could be lost."""


def send_change(
    instance: Any,
    *,
    action: str,
    event_type: str,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any],
) -> None:
    alias = router.db_for_write(type(instance), instance=instance)
    if not connections[alias].in_atomic_block:
        raise SignalOutsideTransaction(f"{event_type} must be sent inside a transaction")
    ledger_changed.send(
        sender=type(instance),
        instance=instance,
        action=action,
        event_type=event_type,
        old_values=old_values,
        new_values=new_values,
    )
