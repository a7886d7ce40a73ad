"""Compare-and-set on a transaction's ``version``: the only way a transaction changes."""

from __future__ import annotations

from typing import Any

from django.db.models import F

from ledger.events import EventType
from ledger.exceptions import ConcurrentUpdate, NotFound
from ledger.models import Transaction
from ledger.signals import changed_audited, insert_audited, update_entry
from ledger.state import check_transition
from payflow.platform.guards import sanctioned_writes


def transaction_fresh(
    pk: Any, *, merchant_id: Any | None = None, lock: bool = False
) -> Transaction:
    """Re-read a transaction inside the current transaction (READ COMMITTED: latest commit).

    ``lock=True`` takes its row lock first (``SELECT … FOR UPDATE``, step 1 of
    ``payflow.platform.db``'s lock order): a service that decides from the row's status or amounts
    then changes it holds the row from the read to the commit, so a concurrent change
    waits instead of making the decision stale. (On Galera the lock is per node; a
    writer on another node loses certification at COMMIT and the transaction is run
    again, reading afresh.)
    """
    query = Transaction.objects.filter(pk=pk)
    if lock:
        query = query.select_for_update()
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


def row_compare_and_set(instance: Any, *, event_type: EventType, **changes: Any) -> Any:
    """``UPDATE … SET …, version = version + 1, audit_hash = ? WHERE id = ? AND version = ?``
    on any audited row with a ``version``, then signal ``event_type`` with the old and new
    values.

    The change's audit entry is computed first (its ``prev_hash`` is the row's
    ``audit_hash`` as read), so the same statement that changes the row names its new
    latest entry: auditing reads and locks nothing else. Zero rows means someone else
    changed the row since it was read: ``ConcurrentUpdate`` with the current version,
    never an overwrite (and nothing staged). Runs inside the caller's transaction.
    """
    model = type(instance)
    old_values = instance.snapshot()
    before = {name: getattr(instance, name) for name in changes}
    old_version = instance.version

    def restore() -> None:
        for name, value in before.items():
            setattr(instance, name, value)
        instance.version = old_version

    for name, value in changes.items():
        setattr(instance, name, value)
    instance.version = old_version + 1
    new_values = instance.snapshot()
    try:  # the instance is left as read whatever refuses (no transaction, no actor, a fork)
        entry = update_entry(
            instance, event_type=event_type, old_values=old_values, new_values=new_values
        )
        with sanctioned_writes():
            updated = model.objects.filter(pk=instance.pk, version=old_version).update(
                version=F("version") + 1, audit_hash=entry.hash, **changes
            )
    except BaseException:
        restore()
        raise
    if not updated:
        restore()
        current = model.objects.filter(pk=instance.pk).values_list("version", flat=True).first()
        kind = getattr(instance, "type", model._meta.model_name)
        raise ConcurrentUpdate(
            f"{kind} {instance.pk} changed since it was read (now version {current})",
            current_version=current,
        )
    changed_audited(instance, entry, old_values=old_values, new_values=new_values)
    return instance


def transaction_compare_and_set(
    txn: Transaction,
    *,
    event_type: EventType,
    status: str | None = None,
    reversal: bool = False,
    **changes: Any,
) -> Transaction:
    """Compare-and-set a transaction, checking the transition table when ``status`` changes
    (``reversal=True``: the table of ways back, ``ledger.state.REVERSALS``)."""
    if status is not None:
        check_transition(txn.type, txn.status, status, reversal=reversal)
        changes["status"] = status
    return row_compare_and_set(txn, event_type=event_type, **changes)


def transaction_insert(**fields: Any) -> Transaction:
    """Insert a transaction and signal ``<type>.created``; inside the caller's transaction."""
    txn = Transaction(**fields)
    return insert_audited(txn, event_type=EventType.created(txn.type))
