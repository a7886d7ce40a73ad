"""Merchant B gets 404 for every one of merchant A's objects, and learns nothing."""

import pytest

from tests.payflow.api.conftest import CARD, assert_error, create_payment


@pytest.fixture
def a_objects(api):
    token = api.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    payment = create_payment(api, amount=5000).json()["id"]
    authorized = create_payment(api, amount=5000, capture=False).json()["id"]
    refund = api.post(f"/v1/payments/{payment}/refunds", {"amount": 100}, format="json").json()[
        "id"
    ]
    return {"token": token, "payment": payment, "authorized": authorized, "refund": refund}


def test_merchant_b_gets_404_for_each_of_merchant_a_s_objects(a_objects, other_api, api):
    reads = [
        f"/v1/tokens/{a_objects['token']}",
        f"/v1/payments/{a_objects['payment']}",
        f"/v1/refunds/{a_objects['refund']}",
    ]
    for path in reads:
        assert_error(other_api.get(path), 404, "resource_missing")
    writes = [
        (f"/v1/payments/{a_objects['authorized']}/capture", {}),
        (f"/v1/payments/{a_objects['authorized']}/cancel", {}),
        (f"/v1/payments/{a_objects['payment']}/refunds", {"amount": 1}),
        ("/v1/payments", {"amount": 100, "currency": "EUR", "token": a_objects["token"]}),
    ]
    for path, body in writes:
        assert_error(other_api.post(path, body, format="json"), 404, "resource_missing")
    # nothing of A's is listed for B, and A's objects are untouched
    for path in ("/v1/payments", "/v1/refunds", "/v1/payouts"):
        assert other_api.get(path).json()["data"] == []
    assert other_api.get("/v1/balance").json()["pending"] == []
    assert api.get(f"/v1/payments/{a_objects['authorized']}").json()["status"] == "authorized"


def test_a_404_for_another_merchants_object_looks_like_a_404_for_nothing(a_objects, other_api):
    theirs = other_api.get(f"/v1/payments/{a_objects['payment']}").json()
    fake_id = "pay_" + "0" * 32
    nothing = other_api.get(f"/v1/payments/{fake_id}").json()
    assert theirs["error"]["code"] == nothing["error"]["code"] == "resource_missing"
    assert theirs["error"]["message"].replace(a_objects["payment"], "X") == nothing["error"][
        "message"
    ].replace(fake_id, "X")


def test_payouts_are_isolated_too(api, other_api, merchant):
    import datetime

    from django.utils import timezone

    from ledger.services.settlement import settlement_run

    create_payment(api, amount=5000)
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))
    payout = api.post("/v1/payouts", {"amount": 100, "currency": "EUR"}, format="json").json()
    assert_error(other_api.get(f"/v1/payouts/{payout['id']}"), 404, "resource_missing")
