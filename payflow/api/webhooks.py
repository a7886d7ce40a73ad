"""``/v1/webhook_endpoints``: where a merchant's events are pushed (``payflow.webhooks``).

Create answers the signing ``secret`` once; no other answer carries it (``roll_secret``
makes a new one and answers it once). Every endpoint and delivery is the key's merchant's
and mode's: another merchant's or mode's id is a 404 like an unknown one.
"""

from __future__ import annotations

import datetime
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ledger import ids
from ledger.events import MERCHANT_EVENT_TYPES
from payflow.api import schema
from payflow.api.auth import request_livemode, request_merchant
from payflow.api.pagination import page_of, page_parameters, paginate
from payflow.api.serializers import (
    LIVEMODE_HELP,
    EmptySerializer,
    StrictBooleanField,
    StrictIntegerField,
    StrictSerializer,
    StrictStringField,
    unix,
)
from payflow.api.views import (
    PAGE_PARAMETERS,
    ApiView,
    _decode,
    _expected_version,
    _missing,
    _validated,
)
from payflow.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payflow.webhooks import endpoints as services

#: The schema's WebhookEndpointStatusEnum and WebhookDeliveryStatusEnum.
ENDPOINT_STATUSES = WebhookEndpoint.Status.values
DELIVERY_STATUSES = WebhookDelivery.Status.values


class EventTypesField(serializers.ListField):
    child = StrictStringField(max_length=64)

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class EndpointCreateSerializer(StrictSerializer):
    url = StrictStringField(max_length=2048)
    enabled_events = EventTypesField(
        help_text=f'Event types ({", ".join(MERCHANT_EVENT_TYPES)}), or ["*"] for all.'
    )
    description = StrictStringField(max_length=500, required=False, allow_blank=True)


class EndpointUpdateSerializer(StrictSerializer):
    url = StrictStringField(max_length=2048, required=False)
    enabled_events = EventTypesField(required=False)
    description = StrictStringField(max_length=500, required=False, allow_blank=True)
    disabled = StrictBooleanField(required=False)


class SecondsField(StrictIntegerField):
    default_error_messages = {"invalid": "Must be an integer number of seconds."}


class RollSecretSerializer(StrictSerializer):
    expires_in = SecondsField(
        min_value=0,
        max_value=604_800,
        required=False,
        help_text="Seconds the current secret keeps signing beside the new one (default 86400).",
    )


class EndpointOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    url = serializers.CharField()
    enabled_events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=ENDPOINT_STATUSES)
    disabled_reason = serializers.CharField(allow_null=True)
    secret = serializers.CharField(
        required=False, help_text="Only in the answer to create and roll_secret: keep it."
    )
    created = serializers.IntegerField()
    version = serializers.IntegerField()


class EndpointDeletedOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    deleted = serializers.BooleanField()


class AttemptOut(serializers.Serializer):
    attempted = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    response_excerpt = serializers.CharField()
    error = serializers.CharField(allow_null=True)


class DeliveryOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    event = serializers.CharField()
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=DELIVERY_STATUSES)
    attempts = AttemptOut(many=True)
    next_attempt = serializers.IntegerField(allow_null=True)
    created = serializers.IntegerField()


def endpoint_body(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    body = {
        "id": ids.encode("webhook_endpoint", endpoint.pk),
        "object": "webhook_endpoint",
        "livemode": endpoint.livemode,
        "url": endpoint.url,
        "enabled_events": endpoint.enabled_events,
        "description": endpoint.description,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason or None,
        "created": unix(endpoint.created_at),
        "version": endpoint.version,
    }
    if secret is not None:
        body["secret"] = secret
    return body


def delivery_body(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    pending = delivery.status == WebhookDelivery.Status.PENDING
    return {
        "id": ids.encode("webhook_delivery", delivery.pk),
        "object": "webhook_delivery",
        "event": ids.encode("event", delivery.event_id),
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": [
            {
                "attempted": unix(attempt.attempted_at),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "response_excerpt": attempt.response_excerpt,
                "error": attempt.error or None,
            }
            for attempt in attempts
        ],
        "next_attempt": unix(delivery.next_attempt_at) if pending else None,
        "created": unix(delivery.created_at),
    }


def _endpoint(request: Request, public_id: str) -> WebhookEndpoint:
    # An unknown, malformed or another merchant's id: the service's NotFound, a 404.
    return services.endpoint_of(
        request_merchant(request).pk,
        request_livemode(request),
        _decode("webhook_endpoint", public_id, "id"),
    )


ENDPOINT_ID = schema.path_id("endpoint_id", "webhook_endpoint")


class WebhookEndpointsView(ApiView):
    query_parameters = PAGE_PARAMETERS

    @extend_schema(
        operation_id="webhook_endpoints_list",
        summary="List webhook endpoints, newest first",
        parameters=page_parameters("webhook_endpoint"),
        responses={200: page_of(EndpointOut, "WebhookEndpointListOut"), **schema.errors(400)},
    )
    def get(self, request: Request) -> Response:
        queryset = WebhookEndpoint.objects.filter(
            merchant=request_merchant(request), livemode=request_livemode(request), deleted=False
        )
        return Response(paginate(request, queryset, "webhook_endpoint", endpoint_body))

    @extend_schema(
        operation_id="webhook_endpoints_create",
        summary="Create a webhook endpoint (answers its signing secret, once)",
        request=EndpointCreateSerializer,
        responses={201: EndpointOut, **schema.errors(400)},
        examples=[
            schema.example(
                "Endpoint",
                {"url": "https://example.com/payflow/webhooks", "enabled_events": ["*"]},
                request=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = _validated(EndpointCreateSerializer, request)
        made = services.webhook_endpoint_create(
            merchant=request_merchant(request),
            livemode=request_livemode(request),
            url=data["url"],
            enabled_events=data["enabled_events"],
            description=data.get("description", ""),
        )
        return Response(endpoint_body(made.endpoint, made.secret), status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(ApiView):
    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        summary="Retrieve a webhook endpoint",
        parameters=[ENDPOINT_ID],
        responses={200: EndpointOut, **schema.errors(404)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(endpoint_body(_endpoint(request, endpoint_id)))

    @extend_schema(
        operation_id="webhook_endpoints_update",
        summary="Update a webhook endpoint (url, events, description, disabled)",
        request=EndpointUpdateSerializer,
        parameters=[ENDPOINT_ID, schema.IF_MATCH],
        responses={200: EndpointOut, **schema.errors(400, 404, 409)},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        data = _validated(EndpointUpdateSerializer, request)
        endpoint = services.webhook_endpoint_update(
            endpoint=_endpoint(request, endpoint_id),
            expected_version=_expected_version(request),
            **data,
        )
        return Response(endpoint_body(endpoint))

    @extend_schema(
        operation_id="webhook_endpoints_delete",
        summary="Delete a webhook endpoint (its deliveries stay on record)",
        parameters=[ENDPOINT_ID],
        responses={200: EndpointDeletedOut, **schema.errors(404)},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = services.webhook_endpoint_delete(endpoint=_endpoint(request, endpoint_id))
        return Response(
            {
                "id": ids.encode("webhook_endpoint", endpoint.pk),
                "object": "webhook_endpoint",
                "deleted": True,
            }
        )


class WebhookEndpointRollSecretView(ApiView):
    @extend_schema(
        operation_id="webhook_endpoints_roll_secret",
        summary="Make a new signing secret (the old one keeps signing for expires_in seconds)",
        request=RollSecretSerializer,
        parameters=[ENDPOINT_ID],
        responses={200: EndpointOut, **schema.errors(400, 404)},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        data = _validated(RollSecretSerializer, request)
        grace = datetime.timedelta(seconds=data.get("expires_in", 86_400))
        rolled = services.webhook_endpoint_roll_secret(
            endpoint=_endpoint(request, endpoint_id), grace=grace
        )
        return Response(endpoint_body(rolled.endpoint, rolled.secret))


def _delivery_page(request: Request, endpoint: WebhookEndpoint) -> dict[str, Any]:
    queryset = WebhookDelivery.objects.filter(endpoint=endpoint)
    tries: dict[Any, list[WebhookAttempt]] = {}

    def prepare(deliveries: list[WebhookDelivery]) -> None:
        for attempt in WebhookAttempt.objects.filter(delivery__in=deliveries).order_by("id"):
            tries.setdefault(attempt.delivery_id, []).append(attempt)

    return paginate(
        request,
        queryset,
        "webhook_delivery",
        lambda delivery: delivery_body(delivery, tries.get(delivery.pk, [])),
        prepare,
    )


class WebhookDeliveriesView(ApiView):
    query_parameters = PAGE_PARAMETERS

    @extend_schema(
        operation_id="webhook_deliveries_list",
        summary="An endpoint's deliveries, newest first, with every attempt",
        parameters=[ENDPOINT_ID, *page_parameters("webhook_delivery")],
        responses={200: page_of(DeliveryOut, "WebhookDeliveryListOut"), **schema.errors(400, 404)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(_delivery_page(request, _endpoint(request, endpoint_id)))


class WebhookDeliveryResendView(ApiView):
    @extend_schema(
        operation_id="webhook_deliveries_resend",
        summary="Deliver one event to this endpoint again, now",
        request=EmptySerializer,
        parameters=[ENDPOINT_ID, schema.path_id("delivery_id", "webhook_delivery")],
        responses={200: DeliveryOut, **schema.errors(400, 404)},
    )
    def post(self, request: Request, endpoint_id: str, delivery_id: str) -> Response:
        _validated(EmptySerializer, request)
        endpoint = _endpoint(request, endpoint_id)
        delivery = WebhookDelivery.objects.filter(
            pk=_decode("webhook_delivery", delivery_id, "id"), endpoint=endpoint
        ).first()
        if delivery is None:
            raise _missing("webhook delivery", delivery_id, "id")
        delivery = services.webhook_delivery_resend(delivery=delivery)
        attempts = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("id"))
        return Response(delivery_body(delivery, attempts))
