"""Every endpoint's success and failure paths."""

import datetime

import pytest
from django.utils import timezone

from ledger.services.settlement import settlement_run
from tests.payflow.api.conftest import CARD, assert_error, create_payment


def test_tokenizing_a_card_returns_brand_last4_expiry_and_fingerprint_never_the_pan(api):
    response = api.post("/v1/tokens", {"card": CARD}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("tok_")
    assert body["card"]["brand"] == "visa"
    assert (body["card"]["last4"], body["card"]["exp_month"], body["card"]["exp_year"]) == (
        "4242",
        12,
        2034,
    )
    again = api.post("/v1/tokens", {"card": CARD}, format="json").json()
    assert again["card"]["fingerprint"] == body["card"]["fingerprint"]
    assert api.get(f"/v1/tokens/{body['id']}").json() == body


def test_an_invalid_card_number_is_a_400_naming_the_parameter(api):
    response = api.post(
        "/v1/tokens", {"card": {**CARD, "number": "4242424242424241"}}, format="json"
    )
    assert_error(response, 400, "invalid_card", "card[number]")


def test_a_payment_with_a_card_is_captured_and_carries_its_version(api):
    response = create_payment(api, amount=2500, external_reference="A-1", metadata={"o": "1"})
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["amount_captured"], body["version"]) == ("captured", 2500, 3)
    assert response["ETag"] == '"3"'
    assert response["Location"] == f"/v1/payments/{body['id']}"
    assert body["card"]["last4"] == "4242"
    assert (body["external_reference"], body["metadata"]) == ("A-1", {"o": "1"})
    assert api.get(f"/v1/payments/{body['id']}").json() == body


def test_a_payment_with_a_token_and_manual_capture_then_partial_capture(api):
    token = api.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    created = api.post(
        "/v1/payments",
        {"amount": 4000, "currency": "EUR", "token": token, "capture": False},
        format="json",
    ).json()
    assert created["status"] == "authorized"
    captured = api.post(f"/v1/payments/{created['id']}/capture", {"amount": 3000}, format="json")
    assert captured.status_code == 200
    assert (captured.json()["status"], captured.json()["amount_captured"]) == ("captured", 3000)


def test_a_declined_card_is_402_card_error_with_its_decline_code_and_the_failed_payment(api):
    response = create_payment(api, number="4000000000009995")
    error = assert_error(response, 402, "card_declined")
    assert error["type"] == "card_error"
    assert error["decline_code"] == "insufficient_funds"
    failed = api.get(f"/v1/payments/{error['payment']}").json()
    assert (failed["status"], failed["decline_code"]) == ("failed", "insufficient_funds")


@pytest.mark.parametrize("amount", [10.5, "1000", True, None, 0, -1, 1e3])
def test_amounts_that_are_not_positive_integers_are_refused(api, amount):
    response = api.post(
        "/v1/payments", {"amount": amount, "currency": "EUR", "card": CARD}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"


def test_unknown_fields_are_refused_by_name(api):
    response = api.post(
        "/v1/payments",
        {"amount": 100, "currency": "EUR", "card": CARD, "amount_decimal": "1.00"},
        format="json",
    )
    assert_error(response, 400, "parameter_unknown", "amount_decimal")
    nested = api.post("/v1/tokens", {"card": {**CARD, "track2": "x"}}, format="json")
    assert_error(nested, 400, "parameter_unknown", "card[track2]")


def test_an_unknown_currency_and_a_missing_card_are_400(api):
    assert_error(create_payment(api, currency="XXX"), 400, "unsupported_currency", "currency")
    response = api.post("/v1/payments", {"amount": 100, "currency": "EUR"}, format="json")
    assert response.status_code == 400


def test_cancel_voids_and_a_second_cancel_is_an_invalid_transition(api):
    payment = create_payment(api, capture=False).json()
    response = api.post(f"/v1/payments/{payment['id']}/cancel", {}, format="json")
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/v1/payments/{payment['id']}/cancel", {}, format="json")
    assert_error(again, 422, "invalid_state_transition")


def test_if_match_with_a_stale_version_is_409_with_the_current_version(api):
    payment = create_payment(api, capture=False).json()
    response = api.post(
        f"/v1/payments/{payment['id']}/capture", {}, format="json", HTTP_IF_MATCH='"1"'
    )
    error = assert_error(response, 409, "concurrent_update")
    assert error["current_version"] == payment["version"]
    assert response["ETag"] == f'"{payment["version"]}"'
    ok = api.post(
        f"/v1/payments/{payment['id']}/capture",
        {},
        format="json",
        HTTP_IF_MATCH=f'"{payment["version"]}"',
    )
    assert ok.status_code == 200


def test_a_malformed_if_match_is_400(api):
    payment = create_payment(api, capture=False).json()
    response = api.post(
        f"/v1/payments/{payment['id']}/capture", {}, format="json", HTTP_IF_MATCH="soon"
    )
    assert_error(response, 400, "parameter_invalid", "If-Match")


def test_refunds_partial_then_over_the_rest_is_refused(api):
    payment = create_payment(api, amount=5000).json()
    refund = api.post(
        f"/v1/payments/{payment['id']}/refunds", {"amount": 2000, "reason": "x"}, format="json"
    )
    assert refund.status_code == 201
    body = refund.json()
    assert (body["amount"], body["status"], body["payment"]) == (2000, "refunded", payment["id"])
    assert api.get(f"/v1/refunds/{body['id']}").json() == body
    too_much = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 3001}, format="json")
    assert_error(too_much, 422, "amount_exceeds_remaining")
    listed = api.get("/v1/refunds", {"payment": payment["id"]}).json()
    assert [item["id"] for item in listed["data"]] == [body["id"]]
    assert api.get(f"/v1/payments/{payment['id']}").json()["amount_refunded"] == 2000


def test_balance_payouts_and_insufficient_balance(api, merchant):
    create_payment(api, amount=10_000)
    balance = api.get("/v1/balance").json()
    assert balance["pending"] == [{"amount": 10_000, "currency": "EUR"}]
    assert balance["available"] == [{"amount": 0, "currency": "EUR"}]
    assert_error(
        api.post("/v1/payouts", {"amount": 1, "currency": "EUR"}, format="json"),
        422,
        "insufficient_balance",
    )
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))
    payout = api.post("/v1/payouts", {"amount": 6000, "currency": "EUR"}, format="json")
    assert payout.status_code == 201
    assert payout.json()["status"] == "pending"
    assert api.get(f"/v1/payouts/{payout.json()['id']}").json() == payout.json()
    assert [p["id"] for p in api.get("/v1/payouts").json()["data"]] == [payout.json()["id"]]
    assert api.get("/v1/balance").json()["available"] == [{"amount": 4000, "currency": "EUR"}]


def test_lists_are_newest_first_with_cursors_both_ways(api):
    ids = [create_payment(api, amount=100 + i).json()["id"] for i in range(5)]
    newest_first = list(reversed(ids))
    first = api.get("/v1/payments", {"limit": 2}).json()
    assert [p["id"] for p in first["data"]] == newest_first[:2]
    assert first["has_more"] is True
    second = api.get("/v1/payments", {"limit": 2, "starting_after": newest_first[1]}).json()
    assert [p["id"] for p in second["data"]] == newest_first[2:4]
    last = api.get("/v1/payments", {"limit": 2, "starting_after": newest_first[3]}).json()
    assert ([p["id"] for p in last["data"]], last["has_more"]) == ([newest_first[4]], False)
    back = api.get("/v1/payments", {"limit": 2, "ending_before": newest_first[2]}).json()
    assert [p["id"] for p in back["data"]] == newest_first[:2]


def test_list_filters_by_status_reference_and_creation_time(api):
    create_payment(api, amount=100, external_reference="keep")
    create_payment(api, amount=200, capture=False)
    assert [
        p["amount"] for p in api.get("/v1/payments", {"status": "authorized"}).json()["data"]
    ] == [200]
    by_ref = api.get("/v1/payments", {"external_reference": "keep"}).json()["data"]
    assert [p["amount"] for p in by_ref] == [100]
    future = int((timezone.now() + datetime.timedelta(hours=1)).timestamp())
    assert api.get("/v1/payments", {"created[gte]": future}).json()["data"] == []
    assert len(api.get("/v1/payments", {"created[lte]": str(future)}).json()["data"]) == 2
    iso = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    assert len(api.get("/v1/payments", {"created[gte]": iso}).json()["data"]) == 2


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "nope"}, "status"),
        ({"created[gte]": "yesterday"}, "created[gte]"),
        ({"starting_after": "pay_zz"}, "starting_after"),
        ({"starting_after": "x", "ending_before": "y"}, "ending_before"),
    ],
)
def test_bad_list_parameters_are_400_naming_them(api, params, param):
    assert_error(api.get("/v1/payments", params), 400, "parameter_invalid", param)


def test_events_list_this_merchants_events_newest_first(api, other_api):
    payment = create_payment(api, amount=700).json()
    create_payment(other_api, amount=800)
    events = api.get("/v1/events").json()
    assert [e["type"] for e in events["data"]] == [
        "payment.captured",
        "payment.authorized",
        "payment.created",
    ]
    newest = events["data"][0]
    assert newest["id"].startswith("evt_")
    assert newest["data"]["object"] == api.get(f"/v1/payments/{payment['id']}").json()
    assert (newest["data"]["object"]["version"], newest["data"]["object"]["status"]) == (
        3,
        "captured",
    )
    page = api.get("/v1/events", {"limit": 1, "starting_after": newest["id"]}).json()
    assert [e["type"] for e in page["data"]] == ["payment.authorized"]
    assert page["has_more"] is True


def test_the_schema_and_the_interactive_docs_are_served(anonymous):
    schema = anonymous.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert anonymous.get("/v1/docs").status_code == 200
