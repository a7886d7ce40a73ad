"""The transition table: every legal transition works, every other one is refused."""

import itertools

import pytest

from ledger.exceptions import ConcurrentUpdate, InvalidStateTransition
from ledger.models import Transaction, TransactionStatus, TransactionType
from ledger.services.transitions import transaction_compare_and_set, transaction_insert
from ledger.state import TRANSITIONS
from payflow.platform import db

ALL = list(
    itertools.product(TransactionType.values, TransactionStatus.values, TransactionStatus.values)
)
LEGAL = [(t, a, b) for t, a, b in ALL if b in TRANSITIONS.get(t, {}).get(a, ())]
ILLEGAL = [(t, a, b) for t, a, b in ALL if b not in TRANSITIONS.get(t, {}).get(a, ())]


@db.atomic
def insert(merchant, type_, status):
    return transaction_insert(
        merchant=merchant, type=type_, status=status, amount=1000, currency="EUR"
    )


@db.atomic
def move(txn, status):
    return transaction_compare_and_set(txn, event_type="test.moved", status=status)


def test_the_table_has_the_expected_number_of_legal_transitions():
    assert len(LEGAL) == 14
    assert len(LEGAL) + len(ILLEGAL) == 4 * 8 * 8


@pytest.mark.parametrize(("type_", "before", "after"), LEGAL)
def test_every_legal_transition_is_a_compare_and_set(merchant, type_, before, after):
    txn = insert(merchant, type_, before)
    moved = move(txn, after)
    stored = Transaction.objects.get(pk=txn.pk)
    assert (moved.status, moved.version) == (after, 2)
    assert (stored.status, stored.version) == (after, 2)


@pytest.mark.parametrize(("type_", "before", "after"), ILLEGAL)
def test_every_other_transition_is_refused_and_changes_nothing(merchant, type_, before, after):
    txn = insert(merchant, type_, before)
    with pytest.raises(InvalidStateTransition, match=f"{type_} cannot go from {before}"):
        move(txn, after)
    stored = Transaction.objects.get(pk=txn.pk)
    assert (stored.status, stored.version) == (before, 1)


def test_a_stale_version_gives_concurrent_update_and_never_overwrites(merchant):
    txn = insert(merchant, TransactionType.PAYMENT, TransactionStatus.AUTHORIZED)
    stale = Transaction.objects.get(pk=txn.pk)
    move(txn, TransactionStatus.CAPTURED)
    with pytest.raises(ConcurrentUpdate) as info:
        move(stale, TransactionStatus.CANCELLED)
    assert info.value.current_version == 2
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.CAPTURED
