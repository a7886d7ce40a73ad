"""Receivers: every ledger change becomes one audit row, in the same transaction."""

from __future__ import annotations

from typing import Any

from audit.services import audit_record


def record_ledger_change(
    sender: Any,
    instance: Any,
    action: str,
    event_type: str,
    old_values: Any,
    new_values: Any,
    **kwargs: Any,
) -> None:
    """Facts only: the snapshot the ledger sent (never secrets), who and from where."""
    audit_record(
        object_type=sender._meta.label_lower,
        object_id=str(instance.pk),
        action=action,
        event_type=event_type,
        old_values=old_values,
        new_values=new_values,
    )
