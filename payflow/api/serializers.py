"""Request validation and response shapes. Requests: strict types, unknown fields refused.

Responses are dicts built by the ``*_body`` functions below: no serializer runs on a
response in the request path. The ``*Out`` serializer next to each body describes it for
the OpenAPI document (drf-spectacular) only; ``tests/payflow/api/test_schema_fuzz.py``
checks that every answer stays within it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from rest_framework import serializers

from ledger import ids
from ledger.currencies import EXPONENTS, MAX_AMOUNT
from ledger.models import (
    CaptureMethod,
    CardToken,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.services.vault import HOLDER_NAME_MAX_LENGTH


def id_pattern(kind: str, *, or_empty: bool = False) -> str:
    """The shape of a public id as the API issues it: ``pay_`` and 32 lower-case hex digits."""
    body = f"{ids.PREFIXES[kind]}_[0-9a-f]{{32}}"
    return f"^({body})?$" if or_empty else f"^{body}$"


class DocumentedField:
    """A request field whose ``openapi`` keywords (what the ledger services check beyond the
    field's own validation) are added to what drf-spectacular derives from the field."""

    openapi: ClassVar[dict[str, Any]] = {}


class DocumentedFieldScheme(OpenApiSerializerFieldExtension):
    target_class = "payflow.api.serializers.DocumentedField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, **self.target.openapi}


class StrictIntegerField(serializers.IntegerField):
    """An integer in the JSON, not a string, a float or a boolean."""

    default_error_messages = {
        "invalid": "Must be an integer number of minor units (e.g. 1050 for 10.50 EUR).",
    }

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictStringField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming the first one."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {unknown[0]: ["Unknown parameter."]}, code="parameter_unknown"
            )
        return super().to_internal_value(data)


class StrictSerializerScheme(OpenApiSerializerExtension):
    """Unknown fields are refused with a 400: ``additionalProperties: false``."""

    target_class = "payflow.api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class AmountField(DocumentedField, StrictIntegerField):
    openapi = {
        "minimum": 1,
        "maximum": MAX_AMOUNT,
        "description": "A positive integer in minor units (1050 is 10.50 EUR).",
    }


class CurrencyField(DocumentedField, StrictStringField):
    openapi = {
        "enum": sorted(EXPONENTS),
        "description": "An ISO 4217 code PayFlow supports (case-insensitive).",
    }


class CardNumberField(DocumentedField, StrictStringField):
    openapi = {
        "pattern": "^[ -]*([0-9][ -]*){13,19}$",
        "description": "13 to 19 digits (spaces and dashes allowed) with a valid check digit.",
    }


class CvcField(DocumentedField, StrictStringField):
    openapi = {"pattern": "^[0-9]{3,4}$"}


class TokenIdField(DocumentedField, StrictStringField):
    openapi = {"pattern": id_pattern("token")}


class HolderNameField(DocumentedField, StrictStringField):
    # The vault's limit is narrower than the field's (it counts after collapsing spaces).
    openapi = {"maxLength": HOLDER_NAME_MAX_LENGTH}


class MetadataField(DocumentedField, serializers.DictField):
    child = StrictStringField(max_length=500, allow_blank=True)
    openapi = {
        "maxProperties": 50,
        "description": "At most 50 keys of at most 40 characters; values are strings.",
    }

    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)
        if len(value) > 50 or any(len(key) > 40 for key in value):
            raise serializers.ValidationError("At most 50 keys of at most 40 characters.")
        return value


class CardSerializer(StrictSerializer):
    number = CardNumberField(max_length=40)
    exp_month = StrictIntegerField(min_value=1, max_value=12)
    exp_year = StrictIntegerField(min_value=2000, max_value=2100)
    cvc = CvcField(max_length=4, required=False)
    name = HolderNameField(max_length=200, required=False, allow_blank=True)


class TokenCreateSerializer(StrictSerializer):
    card = CardSerializer()


class PaymentCreateSerializer(StrictSerializer):
    amount = AmountField()
    currency = CurrencyField(max_length=3, min_length=3)
    card = CardSerializer(required=False)
    token = TokenIdField(max_length=64, required=False)
    cvc = CvcField(max_length=4, required=False)
    capture = StrictBooleanField(required=False, default=True)
    external_reference = StrictStringField(max_length=100, required=False)
    metadata = MetadataField(required=False)

    def validate(self, attrs: dict) -> dict:
        if ("card" in attrs) == ("token" in attrs):
            raise serializers.ValidationError({"card": ["Send exactly one of card or token."]})
        return attrs


class PaymentUpdateSerializer(StrictSerializer):
    metadata = MetadataField(required=False)


class CaptureSerializer(StrictSerializer):
    amount = AmountField(required=False)


class EmptySerializer(StrictSerializer):
    pass


class RefundCreateSerializer(StrictSerializer):
    amount = AmountField(required=False)
    reason = StrictStringField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class PayoutCreateSerializer(StrictSerializer):
    amount = AmountField()
    currency = CurrencyField(max_length=3, min_length=3)
    external_reference = StrictStringField(max_length=100, required=False)
    metadata = MetadataField(required=False)


# --- responses ------------------------------------------------------------------------
LIVEMODE_HELP = "false: test mode; true: live money"

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


class ErrorDetailOut(serializers.Serializer):
    type = serializers.ChoiceField(choices=ERROR_TYPES)
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    decline_code = serializers.CharField(required=False)
    payment = serializers.CharField(required=False)
    current_version = serializers.IntegerField(required=False, allow_null=True)
    request_id = serializers.CharField(
        allow_null=True, help_text="The request's X-Request-ID: quote it when reporting an error."
    )


class ErrorOut(serializers.Serializer):  # payflow.api.errors.error_body
    error = ErrorDetailOut()


class PingOut(serializers.Serializer):
    object = serializers.CharField()
    merchant = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)


class AmountOut(serializers.Serializer):
    amount = serializers.IntegerField()
    currency = serializers.CharField()


class BalanceOut(serializers.Serializer):
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    available = AmountOut(many=True)
    pending = AmountOut(many=True)
    receivable = AmountOut(many=True)


def unix(value) -> int | None:
    return int(value.timestamp()) if value else None


class CardOut(serializers.Serializer):
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField()
    exp_year = serializers.IntegerField()
    fingerprint = serializers.CharField()


def card_summary(token: CardToken | None) -> dict | None:
    if token is None:
        return None
    return {
        "brand": token.brand,
        "last4": token.last4,
        "exp_month": token.exp_month,
        "exp_year": token.exp_year,
        "fingerprint": token.fingerprint,
    }


class TokenOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    card = CardOut()
    created = serializers.IntegerField()


def token_body(token: CardToken) -> dict:
    return {
        "id": ids.encode("token", token.pk),
        "object": "token",
        "livemode": token.livemode,
        "card": card_summary(token),
        "created": unix(token.created_at),
    }


TRANSACTION_STATUSES = TransactionStatus.values  # the schema's TransactionStatusEnum


class _TransactionOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["payment", "refund", "chargeback", "payout"])
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=TRANSACTION_STATUSES)
    metadata = serializers.DictField(child=serializers.CharField())
    created = serializers.IntegerField()
    version = serializers.IntegerField()


def _common(txn: Transaction, kind: str) -> dict:
    return {
        "id": ids.encode(kind, txn.pk),
        "object": kind,
        "livemode": txn.livemode,
        "amount": txn.amount,
        "currency": txn.currency,
        "status": txn.status,
        "metadata": txn.metadata,
        "created": unix(txn.initiated_at),
        "version": txn.version,
    }


class PaymentOut(_TransactionOut):
    object = serializers.ChoiceField(choices=["payment"])
    amount_captured = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    amount_charged_back = serializers.IntegerField()
    capture_method = serializers.ChoiceField(choices=[*CaptureMethod.values, ""])
    card = CardOut(allow_null=True)
    external_reference = serializers.CharField(allow_null=True)
    decline_code = serializers.CharField(allow_null=True)
    failure_message = serializers.CharField(allow_null=True)
    captured_at = serializers.IntegerField(allow_null=True)


def payment_body(payment: Transaction) -> dict:
    return {
        **_common(payment, "payment"),
        "amount_captured": payment.captured_amount,
        "amount_refunded": payment.refunded_amount,
        "amount_charged_back": payment.charged_back_amount,
        "capture_method": payment.capture_method,
        "card": card_summary(payment.card_token),
        "external_reference": payment.external_reference,
        "decline_code": payment.decline_code or None,
        "failure_message": payment.failure_message or None,
        "captured_at": unix(payment.captured_at),
    }


class RefundOut(_TransactionOut):
    object = serializers.ChoiceField(choices=["refund"])
    payment = serializers.CharField()
    reason = serializers.CharField(allow_null=True)


def refund_body(refund: Transaction) -> dict:
    if refund.parent_id is None:  # the column allows it for payments; a refund always has one
        raise ValueError(f"refund {refund.pk} names no payment")
    return {
        **_common(refund, "refund"),
        "payment": ids.encode("payment", refund.parent_id),
        "reason": refund.reason or None,
    }


class PayoutOut(_TransactionOut):
    object = serializers.ChoiceField(choices=["payout"])
    external_reference = serializers.CharField(allow_null=True)


def payout_body(payout: Transaction) -> dict:
    return {**_common(payout, "payout"), "external_reference": payout.external_reference}


class ChargebackOut(_TransactionOut):
    object = serializers.ChoiceField(choices=["chargeback"])
    payment = serializers.CharField()
    reason = serializers.CharField(allow_null=True)


def chargeback_body(chargeback: Transaction) -> dict:
    if chargeback.parent_id is None:
        raise ValueError(f"chargeback {chargeback.pk} names no payment")
    return {
        **_common(chargeback, "chargeback"),
        "payment": ids.encode("payment", chargeback.parent_id),
        "reason": chargeback.reason or None,
    }


#: The body builder of each transaction type: what ``GET`` on it answers, and what an
#: event about it carries as ``data.object`` (``payflow.api.events``).
BODIES = {
    TransactionType.PAYMENT: payment_body,
    TransactionType.REFUND: refund_body,
    TransactionType.CHARGEBACK: chargeback_body,
    TransactionType.PAYOUT: payout_body,
}


def transaction_body(txn: Transaction) -> dict:
    return BODIES[TransactionType(txn.type)](txn)
