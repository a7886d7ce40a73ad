"""The ids people know for the objects audit entries name (``pay_…``, ``acct_…``, ``tok_…``)."""

from __future__ import annotations

import uuid

from ledger import ids
from ledger.models import Transaction

_FIXED = {"ledger.merchant": "merchant", "ledger.cardtoken": "token"}


def public_id(object_type: str, object_id: str) -> str:
    """The public id of an audited object, or ``""`` when it has none (internal objects,
    or a transaction that no longer exists)."""
    try:
        value = uuid.UUID(str(object_id))
    except ValueError:
        return ""
    if object_type in _FIXED:
        return ids.encode(_FIXED[object_type], value)
    if object_type == "ledger.transaction":
        kind = Transaction.objects.filter(pk=value).values_list("type", flat=True).first()
        if kind in ids.PREFIXES:
            return ids.encode(kind, value)
    return ""
