"""Idempotency-Key: replay, reuse with another body or endpoint, concurrency."""

import threading

import pytest
from django.db import connections

from ledger.models import Transaction
from payflow.models import IdempotencyRecord
from tests.payflow.api.conftest import CARD, RecordingClient, assert_error

BODY = {"amount": 1500, "currency": "EUR", "card": CARD}


def test_the_same_key_and_body_replays_the_first_response(api):
    first = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    second = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert second["ETag"] == first["ETag"]
    assert not first.has_header("Idempotent-Replayed")
    assert Transaction.objects.filter(type="payment").count() == 1


def test_the_same_key_with_another_body_is_409_and_does_nothing(api):
    api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-2")
    other = api.post(
        "/v1/payments", {**BODY, "amount": 1600}, format="json", HTTP_IDEMPOTENCY_KEY="order-2"
    )
    assert_error(other, 409, "idempotency_error")
    assert Transaction.objects.filter(type="payment").count() == 1


def test_the_same_key_on_another_endpoint_is_409(api):
    api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k")
    response = api.post("/v1/tokens", {"card": CARD}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(response, 409, "idempotency_error")


def test_a_declined_payment_is_replayed_as_the_same_decline(api):
    body = {**BODY, "card": {**CARD, "number": "4000000000000002"}}
    first = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="d")
    second = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="d")
    assert first.status_code == second.status_code == 422
    assert second.json() == first.json()
    assert Transaction.objects.filter(type="payment").count() == 1


def test_a_validation_failure_is_not_stored_so_the_key_can_be_retried(api):
    bad = api.post(
        "/v1/payments", {**BODY, "amount": "15"}, format="json", HTTP_IDEMPOTENCY_KEY="retry-me"
    )
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    good = api.post(
        "/v1/payments", {**BODY, "amount": 15}, format="json", HTTP_IDEMPOTENCY_KEY="retry-me"
    )
    assert good.status_code == 201


def test_keys_are_per_merchant(api, other_api):
    mine = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    theirs = other_api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


def test_an_overlong_key_is_400(api):
    response = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert_error(response, 400, "parameter_invalid", "Idempotency-Key")


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_requests_create_exactly_one_payment(merchant):
    from ledger.services.api_keys import api_key_create

    secret = api_key_create(merchant=merchant).secret
    barrier = threading.Barrier(20, timeout=30)
    results: list = []

    def send():
        client = RecordingClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        try:
            barrier.wait()
            response = client.post(
                "/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="burst-1"
            )
            results.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(results) == 20
    assert Transaction.objects.filter(merchant=merchant, type="payment").count() == 1
    created = [body for code, body in results if code == 201]
    in_progress = [body for code, body in results if code == 409]
    assert len(created) + len(in_progress) == 20
    assert len({body["id"] for body in created}) == 1  # the first response and its replays
    assert all(body["error"]["code"] == "request_in_progress" for body in in_progress)
