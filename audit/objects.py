"""The objects audit entries name: the ids people know (``pay_…``, ``acct_…``, ``tok_…``),
and where an operator's actions on an object are chained.

An operator action (``payflow.operations``) is not a change of the row it targets — the
service it runs records that — so it is chained on its own object: type
``operator:<target type>``, the target's id. The target's row keeps naming its own latest
entry (``audit_hash``), and the object's history (``history_types``) reads both chains.
"""

from __future__ import annotations

import uuid

from django.apps import apps
from django.core.exceptions import ValidationError

from ledger import ids
from ledger.models import Transaction

OPERATOR_PREFIX = "operator:"

#: Object types whose public id's kind is fixed (a transaction's depends on its type).
FIXED_KINDS = {"ledger.merchant": "merchant", "ledger.cardtoken": "token"}
_TYPE_OF_KIND = {
    **{kind: "ledger.transaction" for kind in ("payment", "refund", "chargeback", "payout")},
    "merchant": "ledger.merchant",
    "token": "ledger.cardtoken",
}


def operator_object_type(target_type: str) -> str:
    """The object type an operator's actions on objects of ``target_type`` are chained on."""
    return OPERATOR_PREFIX + target_type


def target_type(object_type: str) -> str:
    """The type of the object an entry is about (an operator action's: its target's)."""
    return object_type.removeprefix(OPERATOR_PREFIX)


def history_types(object_type: str) -> list[str]:
    """The object types whose entries with the object's id make up its history: its own
    and the operators' actions on it."""
    base = target_type(object_type)
    return [base, operator_object_type(base)]


def public_id(object_type: str, object_id: str) -> str:
    """The public id of an audited object (or of an operator action's target), or ``""``
    when it has none (internal objects, or a transaction that no longer exists)."""
    return public_ids([(object_type, object_id)])[(object_type, object_id)]


def public_ids(objects: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """``public_id`` of each (object type, object id), with one query for all the
    transactions among them (a transaction's prefix is its type's)."""
    found: dict[tuple[str, str], str] = {}
    transactions: dict[uuid.UUID, list[tuple[str, str]]] = {}
    for object_type, object_id in objects:
        found[(object_type, object_id)] = ""
        base = target_type(object_type)
        try:
            value = uuid.UUID(str(object_id))
        except ValueError:
            continue
        if base in FIXED_KINDS:
            found[(object_type, object_id)] = ids.encode(FIXED_KINDS[base], value)
        elif base == "ledger.transaction":
            transactions.setdefault(value, []).append((object_type, object_id))
    if transactions:
        kinds = Transaction.objects.filter(pk__in=list(transactions)).values_list("pk", "type")
        for pk, kind in kinds:
            if kind in ids.PREFIXES:
                for key in transactions[pk]:
                    found[key] = ids.encode(kind, pk)
    return found


def from_public_id(text: str) -> tuple[str, str] | None:
    """(object type, object id) as entries name the object behind a public id (``pay_…``,
    ``re_…``, ``cb_…``, ``po_…``, ``acct_…``, ``tok_…``), or None for anything else. A
    transaction's id must carry its own type's prefix (``pay_`` of a refund is not it)."""
    parsed = ids.parse(text)
    if parsed is None or parsed[0] not in _TYPE_OF_KIND:
        return None
    kind, value = parsed
    transaction = _TYPE_OF_KIND[kind] == "ledger.transaction"
    if transaction and not Transaction.objects.filter(pk=value, type=kind).exists():
        return None
    return _TYPE_OF_KIND[kind], str(value)


def row_exists(object_type: str, object_id: str) -> bool:
    """Whether the audited row (of an operator action's target, for its chain) exists; its
    entries may all have been archived."""
    try:
        model = apps.get_model(target_type(object_type))
        return bool(model._default_manager.filter(pk=object_id).exists())
    except (LookupError, ValueError, ValidationError):
        return False
