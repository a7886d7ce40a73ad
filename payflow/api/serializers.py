"""Request validation and response shapes. Requests: strict types, unknown fields refused."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ledger import ids
from ledger.models import CardToken, Transaction


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


class MetadataField(serializers.DictField):
    child = StrictStringField(max_length=500, allow_blank=True)

    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)
        if len(value) > 50 or any(len(key) > 40 for key in value):
            raise serializers.ValidationError("At most 50 keys of at most 40 characters.")
        return value


class CardSerializer(StrictSerializer):
    number = StrictStringField(max_length=40)
    exp_month = StrictIntegerField(min_value=1, max_value=12)
    exp_year = StrictIntegerField(min_value=2000, max_value=2100)
    cvc = StrictStringField(max_length=4, required=False)
    name = StrictStringField(max_length=200, required=False, allow_blank=True)


class TokenCreateSerializer(StrictSerializer):
    card = CardSerializer()


class PaymentCreateSerializer(StrictSerializer):
    amount = StrictIntegerField()
    currency = StrictStringField(max_length=3, min_length=3)
    card = CardSerializer(required=False)
    token = StrictStringField(max_length=64, required=False)
    cvc = StrictStringField(max_length=4, required=False)
    capture = StrictBooleanField(required=False, default=True)
    external_reference = StrictStringField(max_length=100, required=False)
    metadata = MetadataField(required=False)

    def validate(self, attrs: dict) -> dict:
        if ("card" in attrs) == ("token" in attrs):
            raise serializers.ValidationError({"card": ["Send exactly one of card or token."]})
        return attrs


class CaptureSerializer(StrictSerializer):
    amount = StrictIntegerField(required=False)


class EmptySerializer(StrictSerializer):
    pass


class RefundCreateSerializer(StrictSerializer):
    amount = StrictIntegerField(required=False)
    reason = StrictStringField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class PayoutCreateSerializer(StrictSerializer):
    amount = StrictIntegerField()
    currency = StrictStringField(max_length=3, min_length=3)
    external_reference = StrictStringField(max_length=100, required=False)
    metadata = MetadataField(required=False)


# --- responses ------------------------------------------------------------------------


def unix(value) -> int | None:
    return int(value.timestamp()) if value else None


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


def token_body(token: CardToken) -> dict:
    return {
        "id": ids.encode("token", token.pk),
        "object": "token",
        "livemode": token.livemode,
        "card": card_summary(token),
        "created": unix(token.created_at),
    }


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


def refund_body(refund: Transaction) -> dict:
    return {
        **_common(refund, "refund"),
        "payment": ids.encode("payment", refund.parent_id),
        "reason": refund.reason or None,
    }


def payout_body(payout: Transaction) -> dict:
    return {**_common(payout, "payout"), "external_reference": payout.external_reference}
