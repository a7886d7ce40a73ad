"""No card number from anywhere but the card field.

Reproduced before: a PAN in ``metadata``, ``external_reference``, a refund ``reason``, the
Idempotency-Key or an unknown field's *name* was accepted (or, for the name, echoed in
``param``) and landed in the transaction row, its audit rows (never deletable), the
outbox and the responses.
"""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditEntry
from ledger.models import Transaction
from outbox.models import OutboxEvent
from payflow.models import IdempotencyRecord
from tests.pan_scan import find_pans_in_database
from tests.payflow.api.conftest import CARD, assert_error, create_payment

# Luhn-valid numbers of every length and separator the check must see; none is a test
# card the simulator knows, so nothing can approve them.
PANS = {
    "visa16": "4111111111111111",
    "spaced": "4111 1111 1111 1111",
    "dashed": "4111-1111-1111-1111",
    "amex15": "378282246310005",
    "visa13": "4222222222222",
    "maestro19": "6759649826438453003",
}
DIGITS = {name: pan.replace(" ", "").replace("-", "") for name, pan in PANS.items()}


def payment_body(**extra):
    return {"amount": 1_000, "currency": "EUR", "card": CARD, **extra}


def rows() -> dict[str, int]:
    return {
        "transactions": Transaction.objects.count(),
        "audit": AuditEntry.objects.count(),
        "outbox": OutboxEvent.objects.count(),
        "idempotency": IdempotencyRecord.objects.count(),
    }


@pytest.fixture
def payment(api):
    return create_payment(api, amount=5_000).json()


def cases(pan: str):
    """(description, method, path, body, headers, expected param) for one PAN."""
    return [
        ("metadata value", "post", "/v1/payments", payment_body(metadata={"note": pan}),
         {}, "metadata[note]"),
        ("metadata key", "post", "/v1/payments", payment_body(metadata={pan: "x"}),
         {}, "metadata"),
        ("external_reference", "post", "/v1/payments",
         payment_body(external_reference=f"order {pan}"), {}, "external_reference"),
        ("card holder name", "post", "/v1/tokens", {"card": {**CARD, "name": pan}},
         {}, "card[name]"),
        ("unknown field name", "post", "/v1/payments", {**payment_body(), pan: 1}, {}, None),
        ("unknown card field name", "post", "/v1/tokens", {"card": {**CARD, pan: "1"}},
         {}, "card"),
        ("payout reference", "post", "/v1/payouts",
         {"amount": 100, "currency": "EUR", "external_reference": pan}, {},
         "external_reference"),
        ("payout metadata", "post", "/v1/payouts",
         {"amount": 100, "currency": "EUR", "metadata": {"k": pan}}, {}, "metadata[k]"),
        ("idempotency key", "post", "/v1/payments", payment_body(),
         {"HTTP_IDEMPOTENCY_KEY": pan}, "Idempotency-Key"),
        ("query value", "get", f"/v1/payments?external_reference={pan}", None, {},
         "external_reference"),
        ("query name", "get", f"/v1/payments?{pan}=1", None, {}, None),
        ("number where an integer goes", "post", "/v1/payouts",
         {"amount": int(pan.replace(" ", "").replace("-", "")), "currency": "EUR"}, {},
         "amount"),
    ]  # fmt: skip


@pytest.mark.parametrize("pan_name", sorted(PANS))
def test_a_card_number_in_any_free_text_field_is_refused_and_nothing_kept(api, pan_name):
    pan = PANS[pan_name]
    for description, method, path, body, headers, param in cases(pan):
        before = rows()
        call = getattr(api, method)
        response = call(path, body, format="json", **headers) if body else call(path, **headers)
        error = assert_error(response, 400, "card_number_not_allowed", param)
        assert error["type"] == "invalid_request_error", description
        content = response.content.decode()
        assert DIGITS[pan_name] not in content.replace(" ", "").replace("-", ""), description
        assert rows() == before, description
    assert find_pans_in_database([DIGITS[pan_name]]) == []


def test_refund_reason_and_metadata_with_a_card_number_are_refused(api, payment):
    for body, param in (
        ({"amount": 100, "reason": "card 4111 1111 1111 1111 stolen"}, "reason"),
        ({"amount": 100, "metadata": {"pan": "4111-1111-1111-1111"}}, "metadata[pan]"),
    ):
        response = api.post(f"/v1/payments/{payment['id']}/refunds", body, format="json")
        assert_error(response, 400, "card_number_not_allowed", param)
    assert Transaction.objects.filter(type="refund").count() == 0
    assert find_pans_in_database(["4111111111111111"]) == []


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112",  # Luhn fails: an order number
        "2026-12-02 13:06:37",
        "4242 4242",  # too short
        "40000000000000000002",  # 20 digits in one group
    ],
)
def test_numbers_that_are_not_card_numbers_are_accepted(api, text):
    response = create_payment(api, metadata={"note": text}, external_reference=text[:100])
    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == {"note": text}


def test_uuid_idempotency_keys_are_accepted_whatever_their_digits(api):
    # A UUID's digit groups pass Luhn by chance one time in ten: never a card number.
    keys = ["01a23713-3971-7294-986a-15aa8ace7705", *(str(uuid.uuid4()) for _ in range(30))]
    for key in keys:
        response = api.post(
            "/v1/payments", payment_body(amount=100), format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        assert response.status_code == 201, (key, response.content)


def test_the_card_number_itself_still_goes_in_card_number(api):
    response = api.post(
        "/v1/tokens", {"card": {**CARD, "number": "4242 4242 4242 4242"}}, format="json"
    )
    assert response.status_code == 201, response.content
