"""OpenAPI descriptions of the merchant API (drf-spectacular): shapes, examples, errors.

The serializers here describe responses for the schema only; views build the bodies in
``payflow.api.serializers``. ``tests/payflow/api/test_schema_fuzz.py`` checks that the
responses match this schema.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from ledger import ids
from ledger.currencies import EXPONENTS, MAX_AMOUNT
from ledger.models import CaptureMethod, TransactionStatus
from payflow.api import serializers as s
from payflow.api.idempotency import MAX_KEY_LENGTH
from payflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT

#: Every ``error.type`` the API answers with (``payflow.api.errors`` and the views).
ERROR_TYPES = [
    "api_error",
    "authentication_error",
    "card_error",
    "conflict_error",
    "idempotency_error",
    "invalid_request_error",
    "permission_error",
    "rate_limit_error",
]


def id_pattern(kind: str, *, or_empty: bool = False) -> str:
    """The shape of a public id as the API issues it: ``pay_`` and 32 lower-case hex digits."""
    body = f"{ids.PREFIXES[kind]}_[0-9a-f]{{32}}"
    return f"^({body})?$" if or_empty else f"^{body}$"


class ErrorDetailOut(serializers.Serializer):
    type = serializers.ChoiceField(choices=ERROR_TYPES)
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    decline_code = serializers.CharField(required=False)
    payment = serializers.CharField(required=False)
    current_version = serializers.IntegerField(required=False, allow_null=True)


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()


class CardOut(serializers.Serializer):
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField()
    exp_year = serializers.IntegerField()
    fingerprint = serializers.CharField()


class TokenOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text="false: test mode; true: live money")
    card = CardOut()
    created = serializers.IntegerField()


class _TransactionOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text="false: test mode; true: live money")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=TransactionStatus.values)
    metadata = serializers.DictField(child=serializers.CharField())
    created = serializers.IntegerField()
    version = serializers.IntegerField()


class PaymentOut(_TransactionOut):
    amount_captured = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    amount_charged_back = serializers.IntegerField()
    capture_method = serializers.ChoiceField(choices=[*CaptureMethod.values, ""])
    card = CardOut(allow_null=True)
    external_reference = serializers.CharField(allow_null=True)
    decline_code = serializers.CharField(allow_null=True)
    failure_message = serializers.CharField(allow_null=True)
    captured_at = serializers.IntegerField(allow_null=True)


class RefundOut(_TransactionOut):
    payment = serializers.CharField()
    reason = serializers.CharField(allow_null=True)


class PayoutOut(_TransactionOut):
    external_reference = serializers.CharField(allow_null=True)


# --- requests -------------------------------------------------------------------------
#: What the ledger services check beyond the request serializers, so that the document
#: describes every body the API accepts (property name → schema keywords added).
REQUEST_PROPERTY_SCHEMAS = {
    "amount": {
        "minimum": 1,
        "maximum": MAX_AMOUNT,
        "description": "A positive integer in minor units (1050 is 10.50 EUR).",
    },
    "currency": {
        "enum": sorted(EXPONENTS),
        "description": "An ISO 4217 code PayFlow supports (case-insensitive).",
    },
    "token": {"pattern": id_pattern("token")},
    "cvc": {"pattern": "^[0-9]{3,4}$"},
    "number": {
        "pattern": "^[ -]*([0-9][ -]*){13,19}$",
        "description": "13 to 19 digits (spaces and dashes allowed) with a valid check digit.",
    },
    "metadata": {
        "maxProperties": 50,
        "description": "At most 50 keys of at most 40 characters; values are strings.",
    },
}
#: Per request schema, fields whose documented limit is narrower than the serializer's.
REQUEST_PROPERTY_LIMITS = {("Card", "name"): {"maxLength": 100}}


class StrictSerializerScheme(OpenApiSerializerExtension):
    """Request bodies (``StrictSerializer``): unknown fields are refused with a 400, so the
    document says ``additionalProperties: false``, plus the limits the ledger enforces."""

    target_class = "payflow.api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        target = self.target if isinstance(self.target, type) else type(self.target)
        name = target.__name__.removesuffix("Serializer")
        for prop, prop_schema in schema.get("properties", {}).items():
            if "$ref" in prop_schema:
                continue
            prop_schema.update(REQUEST_PROPERTY_SCHEMAS.get(prop, {}))
            prop_schema.update(REQUEST_PROPERTY_LIMITS.get((name, prop), {}))
        return schema


def _list_of(item, name):
    return type(
        name,
        (serializers.Serializer,),
        {
            "object": serializers.CharField(),
            "url": serializers.CharField(),
            "has_more": serializers.BooleanField(),
            "data": item(many=True),
        },
    )


class EventOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text="false: test mode; true: live money")
    type = serializers.CharField()
    created = serializers.IntegerField()
    data = serializers.DictField()


class AmountOut(serializers.Serializer):
    amount = serializers.IntegerField()
    currency = serializers.CharField()


class BalanceOut(serializers.Serializer):
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text="false: test mode; true: live money")
    available = AmountOut(many=True)
    pending = AmountOut(many=True)
    receivable = AmountOut(many=True)


class PingOut(serializers.Serializer):
    object = serializers.CharField()
    merchant = serializers.CharField()
    livemode = serializers.BooleanField(help_text="false: test mode; true: live money")


PaymentListOut = _list_of(PaymentOut, "PaymentListOut")
RefundListOut = _list_of(RefundOut, "RefundListOut")
PayoutListOut = _list_of(PayoutOut, "PayoutListOut")
EventListOut = _list_of(EventOut, "EventListOut")

# --- parameters -----------------------------------------------------------------------
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
    OpenApiParameter.HEADER,
    description=f"1 to {MAX_KEY_LENGTH} printable characters, else 400. "
    "Makes the POST safe to retry: the same key and body replay the first "
    "response (`Idempotent-Replayed: true`); another body gives 409 idempotency_error; "
    "a request still running gives 409 request_in_progress. Kept at least 24 hours.",
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    {"type": "string", "pattern": '^(W/)?"?[0-9]+"?$'},
    OpenApiParameter.HEADER,
    description='Optimistic concurrency: the version from the ETag (e.g. "3"). A different '
    "current version gives 409 concurrent_update with current_version; anything but a "
    "version gives 400.",
)


def _path_id(name: str, kind: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"type": "string", "pattern": id_pattern(kind)},
        OpenApiParameter.PATH,
        description=f"A {kind} id; any other value is answered with 404.",
    )


def _list_params(kind: str) -> list[OpenApiParameter]:
    # An empty cursor is no cursor (``?starting_after=`` is the first page).
    cursor = {"type": "string", "pattern": id_pattern(kind, or_empty=True)}
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            description=f"1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
        ),
        OpenApiParameter(
            "starting_after", cursor, description=f"A {kind} id: the page after it (older)."
        ),
        OpenApiParameter(
            "ending_before",
            cursor,
            description=f"A {kind} id: the page before it (newer). Not with starting_after.",
        ),
    ]


CREATED = {"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}
FILTER_PARAMS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=TransactionStatus.values),
    OpenApiParameter("created[gte]", CREATED, description="Unix timestamp or ISO 8601 date-time."),
    OpenApiParameter("created[lte]", CREATED, description="Unix timestamp or ISO 8601 date-time."),
    OpenApiParameter("external_reference", OpenApiTypes.STR),
]


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    meanings = {
        400: "Invalid request (validation, unknown or ill-typed parameter, a card number "
        "anywhere but card[number]: card_number_not_allowed).",
        401: "Missing, malformed, unknown or revoked API key.",
        403: "The merchant may not do this (suspended; live mode without a live acquirer).",
        404: "No such object for this merchant.",
        409: "Conflict: idempotency key reuse, request in progress, or version mismatch.",
        422: "Refused: card declined, invalid state transition, amount or balance.",
        429: "Rate limited; see Retry-After.",
    }
    return {code: OpenApiResponse(ErrorOut, description=meanings[code]) for code in codes}


COMMON_ERRORS = (401, 429)
CARD_EXAMPLE = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
PAYMENT_EXAMPLE = {
    "id": "pay_0193a6f2c7d87a3b9e4f1c2d3e4f5a6b",
    "object": "payment",
    "livemode": False,
    "amount": 2500,
    "currency": "EUR",
    "status": "captured",
    "metadata": {"order": "A-1001"},
    "created": 1795286400,
    "version": 3,
    "amount_captured": 2500,
    "amount_refunded": 0,
    "amount_charged_back": 0,
    "capture_method": "automatic",
    "card": {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
        "fingerprint": "5b0e8f1a…",
    },
    "external_reference": "A-1001",
    "decline_code": None,
    "failure_message": None,
    "captured_at": 1795286400,
}
DECLINE_EXAMPLE = {
    "error": {
        "type": "card_error",
        "code": "card_declined",
        "message": "The card was declined.",
        "param": None,
        "decline_code": "generic_decline",
        "payment": "pay_0193a6f2c7d87a3b9e4f1c2d3e4f5a6c",
    }
}


def _example(name, value, *, request=False, status=None):
    return OpenApiExample(
        name,
        value=value,
        request_only=request,
        response_only=not request,
        status_codes=[str(status)] if status else None,
    )


ping = extend_schema(
    operation_id="ping",
    summary="Check an API key",
    responses={200: PingOut, **_errors(*COMMON_ERRORS)},
)
token_create = extend_schema(
    operation_id="tokens_create",
    summary="Tokenize a card",
    request=s.TokenCreateSerializer,
    parameters=[IDEMPOTENCY_KEY],
    responses={201: TokenOut, **_errors(400, 403, 409, *COMMON_ERRORS)},
    examples=[_example("Card", {"card": CARD_EXAMPLE}, request=True)],
)
token_retrieve = extend_schema(
    operation_id="tokens_retrieve",
    summary="Retrieve a token",
    parameters=[_path_id("token_id", "token")],
    responses={200: TokenOut, **_errors(404, *COMMON_ERRORS)},
)
payment_create = extend_schema(
    operation_id="payments_create",
    summary="Create a payment (authorize, and capture unless capture is false)",
    request=s.PaymentCreateSerializer,
    parameters=[IDEMPOTENCY_KEY],
    responses={201: PaymentOut, **_errors(400, 403, 404, 409, 422, *COMMON_ERRORS)},
    examples=[
        _example(
            "With a card",
            {
                "amount": 2500,
                "currency": "EUR",
                "card": CARD_EXAMPLE,
                "external_reference": "A-1001",
                "metadata": {"order": "A-1001"},
            },
            request=True,
        ),
        _example(
            "With a token, manual capture",
            {
                "amount": 2500,
                "currency": "EUR",
                "token": "tok_0193a6f2c7d87a3b9e4f1c2d3e4f5a6b",
                "capture": False,
            },
            request=True,
        ),
        _example("Captured", PAYMENT_EXAMPLE, status=201),
        _example("Declined", DECLINE_EXAMPLE, status=422),
    ],
)
payment_list = extend_schema(
    operation_id="payments_list",
    summary="List payments, newest first",
    parameters=[*_list_params("payment"), *FILTER_PARAMS],
    responses={200: PaymentListOut, **_errors(400, *COMMON_ERRORS)},
)
payment_retrieve = extend_schema(
    operation_id="payments_retrieve",
    summary="Retrieve a payment",
    parameters=[_path_id("payment_id", "payment")],
    responses={200: PaymentOut, **_errors(404, *COMMON_ERRORS)},
    examples=[_example("Payment", PAYMENT_EXAMPLE)],
)
payment_capture = extend_schema(
    operation_id="payments_capture",
    summary="Capture an authorized payment (all or part)",
    request=s.CaptureSerializer,
    parameters=[IDEMPOTENCY_KEY, IF_MATCH, _path_id("payment_id", "payment")],
    responses={200: PaymentOut, **_errors(400, 404, 409, 422, *COMMON_ERRORS)},
    examples=[_example("Partial capture", {"amount": 1500}, request=True)],
)
payment_cancel = extend_schema(
    operation_id="payments_cancel",
    summary="Cancel (void) an authorized payment",
    request=s.EmptySerializer,
    parameters=[IDEMPOTENCY_KEY, IF_MATCH, _path_id("payment_id", "payment")],
    responses={200: PaymentOut, **_errors(400, 404, 409, 422, *COMMON_ERRORS)},
)
refund_create = extend_schema(
    operation_id="refunds_create",
    summary="Refund a payment (all or part)",
    request=s.RefundCreateSerializer,
    parameters=[IDEMPOTENCY_KEY, IF_MATCH, _path_id("payment_id", "payment")],
    responses={201: RefundOut, **_errors(400, 404, 409, 422, *COMMON_ERRORS)},
    examples=[
        _example(
            "Partial refund", {"amount": 1000, "reason": "requested_by_customer"}, request=True
        )
    ],
)
refund_list = extend_schema(
    operation_id="refunds_list",
    summary="List refunds, newest first",
    parameters=[
        *_list_params("refund"),
        *FILTER_PARAMS,
        OpenApiParameter(
            "payment",
            {"type": "string", "pattern": id_pattern("payment")},
            description="Only this payment's refunds. A malformed id gives 404.",
        ),
    ],
    responses={200: RefundListOut, **_errors(400, 404, *COMMON_ERRORS)},
)
refund_retrieve = extend_schema(
    operation_id="refunds_retrieve",
    summary="Retrieve a refund",
    parameters=[_path_id("refund_id", "refund")],
    responses={200: RefundOut, **_errors(404, *COMMON_ERRORS)},
)
balance = extend_schema(
    operation_id="balance_retrieve",
    summary="Pending, available and receivable balances per currency",
    responses={200: BalanceOut, **_errors(*COMMON_ERRORS)},
)
payout_create = extend_schema(
    operation_id="payouts_create",
    summary="Pay out part of the available balance",
    request=s.PayoutCreateSerializer,
    parameters=[IDEMPOTENCY_KEY],
    responses={201: PayoutOut, **_errors(400, 403, 409, 422, *COMMON_ERRORS)},
    examples=[_example("Payout", {"amount": 5000, "currency": "EUR"}, request=True)],
)
payout_list = extend_schema(
    operation_id="payouts_list",
    summary="List payouts, newest first",
    parameters=[*_list_params("payout"), *FILTER_PARAMS],
    responses={200: PayoutListOut, **_errors(400, *COMMON_ERRORS)},
)
payout_retrieve = extend_schema(
    operation_id="payouts_retrieve",
    summary="Retrieve a payout",
    parameters=[_path_id("payout_id", "payout")],
    responses={200: PayoutOut, **_errors(404, *COMMON_ERRORS)},
)
event_list = extend_schema(
    operation_id="events_list",
    summary="This merchant's events, newest first",
    parameters=_list_params("event"),
    responses={200: EventListOut, **_errors(400, *COMMON_ERRORS)},
)
