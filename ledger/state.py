"""The legal state transitions of each transaction type, in one table.

Anything not listed is refused with ``InvalidStateTransition``. A refund's or a
chargeback's amounts are booked in the same transaction as its insert, so it moves from
``initiated`` straight to its final state inside that transaction.
"""

from __future__ import annotations

from ledger.exceptions import InvalidStateTransition
from ledger.models import TransactionStatus as S
from ledger.models import TransactionType as T

TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    T.PAYMENT: {
        S.INITIATED: frozenset({S.AUTHORIZED, S.FAILED}),
        S.AUTHORIZED: frozenset({S.CAPTURED, S.CANCELLED}),
        S.CAPTURED: frozenset({S.SETTLED, S.REFUNDED}),
        S.SETTLED: frozenset({S.REFUNDED}),
    },
    T.REFUND: {S.INITIATED: frozenset({S.REFUNDED, S.FAILED})},
    T.CHARGEBACK: {S.INITIATED: frozenset({S.SETTLED})},
    T.PAYOUT: {
        S.INITIATED: frozenset({S.PENDING, S.FAILED}),
        S.PENDING: frozenset({S.SETTLED, S.FAILED}),
    },
}

#: Statuses a transaction of each type can never leave.
FINAL = {S.FAILED, S.CANCELLED, S.REFUNDED, S.SETTLED}


def allowed(type_: str, from_status: str) -> frozenset[str]:
    return TRANSITIONS.get(type_, {}).get(from_status, frozenset())


def check_transition(type_: str, from_status: str, to_status: str) -> None:
    if to_status not in allowed(type_, from_status):
        raise InvalidStateTransition(f"a {type_} cannot go from {from_status} to {to_status}")
