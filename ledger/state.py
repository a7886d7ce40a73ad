"""The legal state transitions of each transaction type, in one table.

Anything not listed is refused with ``InvalidStateTransition``. A chargeback's amounts are
booked in the same transaction as its insert, so it moves from ``initiated`` straight to
``settled`` inside that transaction. A refund is inserted ``pending`` (its amount reserved
on the payment and booked) and becomes ``refunded`` once the acquirer confirms it, or
``failed`` if the acquirer refuses it, which also returns a fully refunded payment to the
status it was refunded from.
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
    T.REFUND: {S.PENDING: frozenset({S.REFUNDED, S.FAILED})},
    T.CHARGEBACK: {S.INITIATED: frozenset({S.SETTLED})},
    T.PAYOUT: {
        S.INITIATED: frozenset({S.PENDING, S.FAILED}),
        S.PENDING: frozenset({S.SETTLED, S.FAILED}),
    },
}

#: Statuses in which a transaction needs nothing more from the acquirer or from us (a
#: settled or refunded payment can still be refunded back or see its refund fail).
FINAL = {S.FAILED, S.CANCELLED, S.REFUNDED, S.SETTLED}


#: Going back: a fully refunded payment whose refund the acquirer refused returns to the
#: status it was refunded from. Kept out of ``TRANSITIONS`` so that no forward operation
#: (a capture, a settlement) can ever take a refunded payment there.
REVERSALS: dict[str, dict[str, frozenset[str]]] = {
    T.PAYMENT: {S.REFUNDED: frozenset({S.CAPTURED, S.SETTLED})},
}


def allowed(type_: str, from_status: str) -> frozenset[str]:
    return TRANSITIONS.get(type_, {}).get(from_status, frozenset())


def check_transition(
    type_: str, from_status: str, to_status: str, *, reversal: bool = False
) -> None:
    table = REVERSALS if reversal else TRANSITIONS
    if to_status not in table.get(type_, {}).get(from_status, frozenset()):
        raise InvalidStateTransition(f"a {type_} cannot go from {from_status} to {to_status}")
