"""``GET /v1/events``: the merchant's own business events of the key's mode, from the
outbox, newest first."""

from __future__ import annotations

import uuid
from typing import Any

from ledger import ids
from outbox.models import OutboxEvent
from payflow.api.pagination import paginate

PUBLIC_KINDS = {
    "payment": "payment",
    "refund": "refund",
    "payout": "payout",
    "chargeback": "chargeback",
}


def event_body(event: OutboxEvent) -> dict[str, Any]:
    kind = PUBLIC_KINDS.get(event.aggregate_type)
    object_id = ids.encode(kind, uuid.UUID(event.aggregate_id)) if kind else event.aggregate_id
    return {
        "id": ids.encode("event", event.id),
        "object": "event",
        "livemode": event.livemode,
        "type": event.event_type,
        "created": int(event.created_at.timestamp()),
        "data": {"object_id": object_id, "sequence": event.sequence, "object": event.payload},
    }


def merchant_events(request) -> dict[str, Any]:
    queryset = OutboxEvent.objects.filter(
        merchant_id=request.user.pk, livemode=request.auth.livemode
    )
    return paginate(request, queryset, "event", event_body)
