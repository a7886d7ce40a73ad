"""``GET /v1/events``: the merchant's own business events of the key's mode, from the
outbox, newest first."""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework import serializers

from ledger import ids
from outbox.models import OutboxEvent
from payflow.api.pagination import page_of, paginate
from payflow.api.serializers import LIVEMODE_HELP
from payflow.platform import personal

PUBLIC_KINDS = {
    "payment": "payment",
    "refund": "refund",
    "payout": "payout",
    "chargeback": "chargeback",
}


class EventDataOut(serializers.Serializer):
    object_id = serializers.CharField()
    sequence = serializers.IntegerField(help_text="The object's version after the change.")
    object = serializers.DictField(help_text="The object as of this event.")


class EventOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    type = serializers.CharField()
    created = serializers.IntegerField()
    # DRF's metaclass takes declared fields off the class, so this does not shadow .data.
    data = EventDataOut()  # type: ignore[assignment]


EventListOut = page_of(EventOut, "EventListOut")


def _opened(event: OutboxEvent) -> dict[str, Any]:
    # Stored (and published) with the cardholder's personal data sealed; the merchant
    # reads it opened, or "[erased]" once the cardholder was erased.
    opened = personal.reveal_values("ledger.transaction", event.aggregate_id, event.payload)
    if opened and opened.get("metadata") == personal.ERASED:
        opened = {**opened, "metadata": {}}  # the API's type: an object
    return opened


def event_body(event: OutboxEvent) -> dict[str, Any]:
    kind = PUBLIC_KINDS.get(event.aggregate_type)
    object_id = ids.encode(kind, uuid.UUID(event.aggregate_id)) if kind else event.aggregate_id
    return {
        "id": ids.encode("event", event.id),
        "object": "event",
        "livemode": event.livemode,
        "type": event.event_type,
        "created": int(event.created_at.timestamp()),
        "data": {"object_id": object_id, "sequence": event.sequence, "object": _opened(event)},
    }


def merchant_events(request) -> dict[str, Any]:
    queryset = OutboxEvent.objects.filter(
        merchant_id=request.user.pk, livemode=request.auth.livemode
    )
    return paginate(request, queryset, "event", event_body, _prefetch_keys)


def _prefetch_keys(events: list[OutboxEvent]) -> None:
    # a page of events of many cardholders: their keys in one read, not one each
    personal.prefetch_keys(event.payload for event in events)
