import logging
import re

import pytest
from rest_framework.test import APIClient

from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from tests.pan_scan import TEST_CARD_NUMBERS, card_numbers_in_text

PAN_PATTERN = re.compile("|".join(TEST_CARD_NUMBERS))
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


# The OpenAPI document shows the public test card in its request examples: documentation,
# not card data, so it is the one body not scanned.
DOCUMENTATION_PATHS = ("/v1/schema", "/v1/docs")


class RecordingClient(APIClient):
    """An APIClient that remembers every response body, to check none holds a PAN."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bodies: list[bytes] = []

    def request(self, **kwargs):
        response = super().request(**kwargs)
        if not kwargs.get("PATH_INFO", "").startswith(DOCUMENTATION_PATHS):
            self.bodies.append(response.content)
        return response


@pytest.fixture(autouse=True)
def no_pan_in_any_response_or_log(caplog, request, unredacted_logs):
    """After every API test: no card number (a test card, or any Luhn-valid 13-19 digit
    run) in a response body or a log record."""
    caplog.set_level(logging.DEBUG)
    clients: list[RecordingClient] = []
    request.node.recording_clients = clients
    yield
    for client in clients:
        for body in client.bodies:
            text = body.decode("utf-8", "replace")
            assert not PAN_PATTERN.search(text), body[:300]
            assert card_numbers_in_text(text) == [], body[:300]
    assert not PAN_PATTERN.search(caplog.text)
    assert card_numbers_in_text(caplog.text) == []


@pytest.fixture
def merchant(db):
    return merchant_create(name="Merchant A")


@pytest.fixture
def other_merchant(db):
    return merchant_create(name="Merchant B")


def _client(request, merchant) -> RecordingClient:
    secret = api_key_create(merchant=merchant).secret
    client = RecordingClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    request.node.recording_clients.append(client)
    return client


@pytest.fixture
def api(request, merchant):
    return _client(request, merchant)


@pytest.fixture
def other_api(request, other_merchant):
    return _client(request, other_merchant)


@pytest.fixture
def anonymous(request):
    client = RecordingClient()
    request.node.recording_clients.append(client)
    return client


def create_payment(api, amount=2500, capture=True, number="4242424242424242", **extra):
    body = {
        "amount": amount,
        "currency": "EUR",
        "card": {**CARD, "number": number},
        "capture": capture,
        **extra,
    }
    return api.post("/v1/payments", body, format="json")


def assert_error(response, status, code, param=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert {"type", "code", "message", "param"} <= set(body["error"])
    assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]
