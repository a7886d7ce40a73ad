"""Compare-and-set on a transaction's ``version``: the only way a transaction changes."""

from __future__ import annotations

from collections.abc import Sequence
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
    return row_compare_and_set_steps(instance, [(event_type, changes)])


def row_compare_and_set_steps(
    instance: Any, steps: Sequence[tuple[EventType, dict[str, Any]]]
) -> Any:
    """Several changes of one row in one compare-and-set ``UPDATE`` (e.g. a sale's
    ``initiated → authorized → captured``): each step is its own audit entry and its own
    version (and signal, so its own event), chained in order; the statement sets the last
    step's values, ``version = version + len(steps)`` and the last entry's hash, where the
    version is still the one read. Same refusals as ``row_compare_and_set``."""
    model = type(instance)
    names = {name for _event, changes in steps for name in changes}
    before = {name: getattr(instance, name) for name in names}
    old_version, old_hash = instance.version, instance.audit_hash

    def restore() -> None:
        for name, value in before.items():
            setattr(instance, name, value)
        instance.version, instance.audit_hash = old_version, old_hash

    staged: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    merged: dict[str, Any] = {}
    try:  # the instance is left as read whatever refuses (no transaction, no actor, a fork)
        for event_type, changes in steps:
            old_values = instance.snapshot()
            for name, value in changes.items():
                setattr(instance, name, value)
            instance.version += 1
            new_values = instance.snapshot()
            entry = update_entry(
                instance, event_type=event_type, old_values=old_values, new_values=new_values
            )
            instance.audit_hash = entry.hash  # the next step's entry chains to this one
            staged.append((entry, old_values, new_values))
            merged.update(changes)
        with sanctioned_writes():
            updated = model.objects.filter(pk=instance.pk, version=old_version).update(
                version=F("version") + len(steps), audit_hash=staged[-1][0].hash, **merged
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
    for entry, old_values, new_values in staged:
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


def transaction_compare_and_set_steps(
    txn: Transaction, steps: Sequence[tuple[EventType, dict[str, Any]]]
) -> Transaction:
    """``row_compare_and_set_steps`` for a transaction, checking each step's transition
    (a step's ``status`` key) against the table in turn."""
    status = txn.status
    for _event, changes in steps:
        if "status" in changes:
            check_transition(txn.type, status, changes["status"])
            status = changes["status"]
    return row_compare_and_set_steps(txn, steps)


def transaction_insert(**fields: Any) -> Transaction:
    """Insert a transaction and signal ``<type>.created``; inside the caller's transaction."""
    txn = Transaction(**fields)
    return insert_audited(txn, event_type=EventType.created(txn.type))
