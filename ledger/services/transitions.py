"""Compare-and-set on a transaction's ``version``: the only way a transaction changes."""

from __future__ import annotations

from typing import Any

from django.db.models import F

from ledger.exceptions import ConcurrentUpdate, NotFound
from ledger.models import Transaction
from ledger.signals import send_change
from ledger.state import check_transition
from payflow.models import sanctioned_writes


def transaction_fresh(pk: Any, *, merchant_id: Any | None = None) -> Transaction:
    """Re-read a transaction inside the current transaction (READ COMMITTED: latest commit)."""
    query = Transaction.objects.filter(pk=pk)
    if merchant_id is not None:
        query = query.filter(merchant_id=merchant_id)
    found = query.first()
    if found is None:
        raise NotFound(f"no such transaction: {pk}")
    return found


def check_expected_version(txn: Transaction, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != txn.version:
        raise ConcurrentUpdate(
            f"{txn.type} {txn.pk} is at version {txn.version}, not {expected_version}",
            current_version=txn.version,
        )


def transaction_compare_and_set(
    txn: Transaction, *, event_type: str, status: str | None = None, **changes: Any
) -> Transaction:
    """``UPDATE … SET …, version = version + 1 WHERE id = ? AND version = ?``.

    Checks the transition table when ``status`` changes. Zero rows means someone else
    changed the row since it was read: ``ConcurrentUpdate`` with the current version, never
    an overwrite. On success the instance is updated and ``event_type`` is signalled with
    the old and new values, inside the caller's transaction.
    """
    if status is not None:
        check_transition(txn.type, txn.status, status)
        changes["status"] = status
    old_values = txn.snapshot()
    with sanctioned_writes():
        updated = Transaction.objects.filter(pk=txn.pk, version=txn.version).update(
            version=F("version") + 1, **changes
        )
    if not updated:
        current = Transaction.objects.filter(pk=txn.pk).values_list("version", flat=True).first()
        raise ConcurrentUpdate(
            f"{txn.type} {txn.pk} changed since it was read (now version {current})",
            current_version=current,
        )
    for name, value in changes.items():
        setattr(txn, name, value)
    txn.version += 1
    send_change(
        txn,
        action="update",
        event_type=event_type,
        old_values=old_values,
        new_values=txn.snapshot(),
    )
    return txn


def transaction_insert(**fields: Any) -> Transaction:
    """Insert a transaction and signal ``<type>.created``; inside the caller's transaction."""
    txn = Transaction.objects.create(**fields)
    send_change(
        txn,
        action="insert",
        event_type=f"{txn.type}.created",
        old_values=None,
        new_values=txn.snapshot(),
    )
    return txn
