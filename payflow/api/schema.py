"""OpenAPI pieces the views' ``@extend_schema`` share: headers, path ids, the error
responses and the examples. Bodies are described by the serializers
(``payflow.api.serializers``, ``payflow.api.events``, ``payflow.api.pagination``).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from ledger.models import TransactionStatus
from payflow.api.idempotency import MAX_KEY_LENGTH
from payflow.api.serializers import ErrorOut, PaymentOut, id_pattern

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


def path_id(name: str, kind: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"type": "string", "pattern": id_pattern(kind)},
        OpenApiParameter.PATH,
        description=f"A {kind} id; any other value is answered with 404.",
    )


#: A write to an existing payment: retried safely, and only at the version the client saw.
PAYMENT_WRITE_PARAMETERS = [IDEMPOTENCY_KEY, IF_MATCH, path_id("payment_id", "payment")]

CREATED = {"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}
#: The filters of the transaction lists (``views._filtered``).
FILTER_PARAMS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=TransactionStatus.values),
    OpenApiParameter("created[gte]", CREATED, description="Unix timestamp or ISO 8601 date-time."),
    OpenApiParameter("created[lte]", CREATED, description="Unix timestamp or ISO 8601 date-time."),
    OpenApiParameter("external_reference", OpenApiTypes.STR),
]
PAYMENT_FILTER = OpenApiParameter(
    "payment",
    {"type": "string", "pattern": id_pattern("payment")},
    description="Only this payment's refunds. A malformed id gives 404.",
)

#: The filters of ``GET /v1/events`` (``payflow.api.events``).
EVENT_FILTERS = [
    OpenApiParameter(
        "type",
        OpenApiTypes.STR,
        description="An event type (payment.captured), or a prefix ending in * (payment.*).",
    ),
    OpenApiParameter("created[gte]", CREATED, description="Unix timestamp or ISO 8601 date-time."),
    OpenApiParameter("created[lte]", CREATED, description="Unix timestamp or ISO 8601 date-time."),
]

ERROR_MEANINGS = {
    400: "Invalid request (validation, unknown or ill-typed parameter, a card number "
    "anywhere but card[number]: card_number_not_allowed).",
    401: "Missing, malformed, unknown or revoked API key.",
    403: "The merchant may not do this (suspended; live mode without a live acquirer).",
    404: "No such object for this merchant.",
    402: "The card was declined (card_error; decline_code says why, payment names it).",
    409: "Conflict: idempotency key reuse, request in progress, or version mismatch.",
    422: "Refused: invalid state transition, amount or balance.",
    429: "Rate limited; see Retry-After.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error responses ``codes``, and those every operation can give (401, 429)."""
    return {
        code: OpenApiResponse(ErrorOut, description=ERROR_MEANINGS[code])
        for code in sorted({*codes, 401, 429})
    }


PAYMENT_PENDING = OpenApiResponse(
    PaymentOut,
    description="The acquirer's answer is not known yet (status initiated); the recovery "
    "job asks the acquirer for it.",
)


def example(name: str, value: dict, *, request: bool = False, status: int | None = None):
    return OpenApiExample(
        name,
        value=value,
        request_only=request,
        response_only=not request,
        status_codes=[str(status)] if status else None,
    )


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
PAYMENT_CREATE_EXAMPLES = [
    example(
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
    example(
        "With a token, manual capture",
        {
            "amount": 2500,
            "currency": "EUR",
            "token": "tok_0193a6f2c7d87a3b9e4f1c2d3e4f5a6b",
            "capture": False,
        },
        request=True,
    ),
    example("Captured", PAYMENT_EXAMPLE, status=201),
    example("Declined", DECLINE_EXAMPLE, status=402),
]
