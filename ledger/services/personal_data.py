"""A cardholder's personal data: which ledger values are theirs, and erasing them.

Registered with ``payflow.platform.personal`` (``register_personal_fields``, at start-up):

- a transaction's ``metadata`` and ``reason`` (free text a merchant or operator typed) are
  the personal data of the cardholder whose card paid: subject ``cardholder:<token id>``
  (a refund's or chargeback's, through its payment). A payout has no cardholder: its texts
  are the merchant's and are not sealed;
- a card token's ``fingerprint`` (it links one card across tokens) is the cardholder's.

``cardholder_anonymise`` empties those values in the mutable rows (each a compare-and-set
with its audit entry) and wipes the token's vault ciphertext (PAN and holder name): the
token can never be charged again. The caller (``payflow.operations``) destroys the
subject's key in the same transaction (``audit.subjects.subject_erase``).
"""

from __future__ import annotations

import functools
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from ledger.events import EventType
from ledger.models import CardToken, Transaction
from ledger.services.transitions import row_compare_and_set
from payflow.platform import personal

#: A transaction's personal fields, and what each reads once anonymised.
TRANSACTION_EMPTY: dict[str, Any] = {"metadata": {}, "reason": ""}
TRANSACTION_FIELDS = tuple(TRANSACTION_EMPTY)
CARD_TOKEN_FIELDS = ("fingerprint",)
_ERASED_NONCE = bytes(12)


def cardholder_subject(token_id: Any) -> str:
    return f"cardholder:{token_id}"


@functools.lru_cache(maxsize=4096)
def _card_of_payment(payment_id: str) -> str | None:
    # A payment's card never changes: cached per process.
    try:
        token = Transaction.objects.filter(pk=payment_id).values_list("card_token_id", flat=True)
        found = token.first()
    except ValidationError:  # not a transaction id
        return None
    return str(found) if found else None


def transaction_subject(object_id: str, values: dict[str, Any]) -> str | None:
    """The cardholder a transaction's personal values belong to: its card's, or its
    payment's (a refund, a chargeback); ``values`` without either (an operator action's
    on the transaction) name it by ``object_id``. None: a payout, nobody's."""
    if "card_token" in values or "parent" in values:
        token = values.get("card_token")
        if not token and values.get("parent"):
            token = _card_of_payment(str(values["parent"]))
    else:
        token = _card_of_payment(str(object_id))
    return cardholder_subject(token) if token else None


def _token_subject(object_id: str, values: dict[str, Any]) -> str | None:
    return cardholder_subject(object_id)


def register_personal_fields() -> None:
    """Declare the ledger's personal fields (``ledger.apps``)."""
    personal.register("ledger.transaction", TRANSACTION_FIELDS, transaction_subject)
    personal.register("ledger.cardtoken", CARD_TOKEN_FIELDS, _token_subject, born_with_insert=True)


def card_token_erased(token: CardToken) -> bool:
    """Whether the token's card data was erased (it can no longer be charged)."""
    return bytes(token.nonce) == _ERASED_NONCE and not bytes(token.ciphertext)


def cardholder_anonymise(token: CardToken) -> dict[str, int]:
    """Empty the cardholder's personal values in the ledger's rows, inside the caller's
    transaction: the free texts of every transaction the card paid (and of their refunds
    and chargebacks), the token's fingerprint and its vault ciphertext. Returns how many
    rows of each kind changed. ``ConcurrentUpdate`` if one changed meanwhile (the caller's
    transaction is retried or refused whole)."""
    changed = {"transactions": 0, "card_tokens": 0}
    rows = (
        Transaction.objects.filter(Q(card_token=token) | Q(parent__card_token=token)).order_by(
            "pk"
        )  # the ledger's lock order: transactions by id
    )
    for txn in rows:
        changes = dict(TRANSACTION_EMPTY)
        if all(getattr(txn, name) == value for name, value in changes.items()):
            continue
        row_compare_and_set(txn, event_type=EventType.TRANSACTION_PERSONAL_DATA_ERASED, **changes)
        changed["transactions"] += 1
    if not card_token_erased(token) or token.fingerprint:
        row_compare_and_set(
            token,
            event_type=EventType.CARD_TOKEN_ERASED,
            fingerprint="",
            nonce=_ERASED_NONCE,
            ciphertext=b"",
        )
        changed["card_tokens"] += 1
    return changed
