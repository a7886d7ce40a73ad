"""Events as merchants read them: ``GET /v1/events``, ``GET /v1/events/{id}`` and the body
of every webhook (``payflow.webhooks``), all built here by ``render_events``.

An event's ``data.object`` is exactly what ``GET`` on that object answered at that version:
it is rebuilt from the event's stored payload (the transaction's snapshot after the
change) and passed through the same body builder as the object's own endpoint
(``payflow.api.serializers.transaction_body``). An update also carries
``previous_attributes``: the members of ``data.object`` that differ from the object as the
previous event showed it, with their earlier values (Stripe's convention).

The payload is stored (and published to Kafka) with the cardholder's personal data sealed;
it is opened here, and reads as emptied once the cardholder was erased.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Q, Subquery
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from ledger import ids
from ledger.events import MERCHANT_EVENT_TYPES
from ledger.exceptions import NotFound
from ledger.models import CardToken, Transaction
from outbox.models import OutboxEvent
from payflow.api.errors import ApiError
from payflow.api.pagination import created_filter, page_of, paginate
from payflow.api.serializers import (
    LIVEMODE_HELP,
    ChargebackOut,
    PaymentOut,
    PayoutOut,
    RefundOut,
    transaction_body,
)
from payflow.platform import personal

EVENT_FILTER_PARAMETERS = ("type", "created[gte]", "created[lte]")


class EventDataOut(serializers.Serializer):
    # One of the four transaction resources, told apart by its "object" member.
    object = PolymorphicProxySerializer(
        component_name="EventObject",
        serializers={
            "payment": PaymentOut,
            "refund": RefundOut,
            "chargeback": ChargebackOut,
            "payout": PayoutOut,
        },
        resource_type_field_name="object",
        help_text="The object exactly as GET on it answered at this version.",
    )
    previous_attributes = serializers.DictField(
        required=False,
        help_text="For an update: the members of object that changed, with their earlier values.",
    )


class EventOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    api_version = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    type = serializers.ChoiceField(choices=MERCHANT_EVENT_TYPES)
    created = serializers.IntegerField()
    # DRF's metaclass takes declared fields off the class, so this does not shadow .data.
    data = EventDataOut()  # type: ignore[assignment]


EventListOut = page_of(EventOut, "EventListOut")

_FIELDS = {field.name: field for field in Transaction._meta.concrete_fields}


def _opened(event: OutboxEvent) -> dict[str, Any]:
    opened = personal.reveal_values("ledger.transaction", event.aggregate_id, event.payload)
    opened = dict(opened or {})
    # An erased cardholder's texts read as the API's empty values.
    if opened.get("metadata") == personal.ERASED:
        opened["metadata"] = {}
    if opened.get("reason") == personal.ERASED:
        opened["reason"] = ""
    return opened


def transaction_as_of(values: dict[str, Any]) -> Transaction:
    """An unsaved ``Transaction`` holding a snapshot's values (``snapshot()``'s names,
    foreign keys by id): what the row was at that version."""
    txn = Transaction()
    for name, value in values.items():
        field = _FIELDS.get(name)
        if field is None:
            continue
        setattr(txn, field.attname, field.to_python(value))
    return txn


class _Renderer:
    """Renders a batch of events, reading what they all need at once: the cardholders'
    keys, the card tokens and each update's previous event."""

    def __init__(self, events: list[OutboxEvent]) -> None:
        self.previous = _previous_events(events)
        every = [*events, *self.previous.values()]
        personal.prefetch_keys(event.payload for event in every)
        token_ids = {event.payload.get("card_token") for event in every} - {None, ""}
        self.tokens = {str(token.pk): token for token in CardToken.objects.filter(pk__in=token_ids)}

    def object_of(self, event: OutboxEvent) -> dict[str, Any]:
        txn = transaction_as_of(_opened(event))
        if txn.card_token_id is not None:
            txn.card_token = self.tokens.get(str(txn.card_token_id))
        return transaction_body(txn)

    def body(self, event: OutboxEvent) -> dict[str, Any]:
        current = self.object_of(event)
        data: dict[str, Any] = {"object": current}
        previous = self.previous.get(event.pk)
        if previous is not None:
            before = self.object_of(previous)
            data["previous_attributes"] = {
                name: before.get(name)
                for name in current
                if name != "version" and before.get(name) != current[name]
            }
        return {
            "id": ids.encode("event", event.pk),
            "object": "event",
            "api_version": settings.PAYFLOW_API_VERSION,
            "livemode": event.livemode,
            "type": event.event_type,
            "created": int(event.created_at.timestamp()),
            "data": data,
        }


def _previous_events(events: list[OutboxEvent]) -> dict[Any, OutboxEvent]:
    """For each update, the event of the same object just before it: two queries for a
    page, each row found by the (aggregate, sequence) index, never an object's whole
    history."""
    updates = [event.pk for event in events if event.sequence > 1]
    if not updates:
        return {}
    before = OutboxEvent.objects.filter(
        aggregate_id=OuterRef("aggregate_id"), sequence__lt=OuterRef("sequence")
    ).order_by("-sequence")
    links = dict(
        OutboxEvent.objects.filter(pk__in=updates)
        .annotate(previous_id=Subquery(before.values("pk")[:1]))
        .values_list("pk", "previous_id")
    )
    found = OutboxEvent.objects.in_bulk([pk for pk in links.values() if pk is not None])
    return {pk: found[previous] for pk, previous in links.items() if previous in found}


def render_events(events: Iterable[OutboxEvent]) -> list[dict[str, Any]]:
    """The API bodies of ``events`` (merchant events of transactions), in their order."""
    events = list(events)
    renderer = _Renderer(events)
    return [renderer.body(event) for event in events]


def event_body(event: OutboxEvent) -> dict[str, Any]:
    return render_events([event])[0]


def _type_filter(raw: str) -> Q:
    """``payment.captured``, or a prefix and ``*`` (``payment.*``, ``*``)."""
    if raw.endswith("*"):
        prefix = raw[:-1]
        matching = [name for name in MERCHANT_EVENT_TYPES if name.startswith(prefix)]
    else:
        matching = [raw] if raw in MERCHANT_EVENT_TYPES else []
    if not matching:
        raise ApiError(
            400,
            "invalid_request_error",
            "parameter_invalid",
            "type must be an event type (see docs/events.md) or a prefix ending in * (payment.*).",
            "type",
        )
    return Q(event_type__in=matching)


def merchant_event_queryset(request):
    return OutboxEvent.objects.filter(
        merchant_id=request.user.pk,
        livemode=request.auth.livemode,
    )


def merchant_events(request) -> dict[str, Any]:
    """A page of this merchant's events of the key's mode, newest first, filtered by
    ``type`` and ``created[gte|lte]``."""
    params = request.query_params
    queryset = merchant_event_queryset(request)
    if "type" in params:
        queryset = queryset.filter(_type_filter(params["type"]))
    queryset = queryset.filter(**created_filter(params, "created_at"))
    rendered: dict[Any, dict[str, Any]] = {}

    def prepare(events: list[OutboxEvent]) -> None:
        for event, body in zip(events, render_events(events), strict=True):
            rendered[event.pk] = body

    return paginate(request, queryset, "event", lambda event: rendered[event.pk], prepare)


def merchant_event(request, public_id: str) -> dict[str, Any]:
    try:
        event_id: uuid.UUID | None = ids.decode("event", public_id)
    except NotFound:  # not an event id: never repeated (it could be anything)
        event_id = None
    event = merchant_event_queryset(request).filter(pk=event_id).first() if event_id else None
    if event is None:
        raise ApiError(
            404,
            "invalid_request_error",
            "resource_missing",
            "No such event." if event_id is None else f"No such event: '{public_id}'",
            "id",
        )
    return event_body(event)
