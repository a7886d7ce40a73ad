"""API keys and the one error shape."""

import base64
import json

import pytest

from ledger.models import Transaction
from ledger.services.api_keys import api_key_create, api_key_revoke
from tests.payflow.api.conftest import CARD, assert_error


def test_a_request_without_a_key_is_401_with_the_error_shape(anonymous):
    response = anonymous.get("/v1/payments")
    error = assert_error(response, 401, "missing_api_key")
    assert error["type"] == "authentication_error"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        "Basic " + base64.b64encode(b":sk_test_in_the_password").decode(),
        "Basic " + base64.b64encode(b"sk_test_" + b"a" * 43 + b":").decode(),
        "Basic !!!not-base64!!!",
        "Bearer",
        "Bearer sk_test_",
        "Bearer sk_live_nope",
        "Bearer pk_test_" + "a" * 40,
        "Bearer sk_test_" + "a" * 43,
    ],
)
def test_malformed_or_unknown_keys_are_401(anonymous, header, db):
    anonymous.credentials(HTTP_AUTHORIZATION=header)
    assert_error(anonymous.get("/v1/payments"), 401, "invalid_api_key")


def test_basic_auth_with_the_key_as_user_name_is_accepted(anonymous, merchant):
    # Reproduced before: `curl -u sk_test_…:` (what Stripe's clients send) was refused 401.
    issued = api_key_create(merchant=merchant)
    for password in (b"", b"ignored"):
        encoded = base64.b64encode(issued.secret.encode() + b":" + password).decode()
        anonymous.credentials(HTTP_AUTHORIZATION=f"Basic {encoded}")
        response = anonymous.get("/v1/ping")
        assert response.status_code == 200, response.content
        assert response.json()["livemode"] is False


def test_a_refused_authorization_header_is_never_echoed(anonymous, db):
    header = "Basic " + base64.b64encode(b"4111111111111111:").decode()
    anonymous.credentials(HTTP_AUTHORIZATION=header)
    response = anonymous.get("/v1/payments")
    assert_error(response, 401, "invalid_api_key")
    assert b"4111" not in response.content
    assert header.split()[1].encode() not in response.content


def test_a_revoked_key_stops_working_at_once(anonymous, merchant):
    issued = api_key_create(merchant=merchant)
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert anonymous.get("/v1/ping").status_code == 200
    api_key_revoke(api_key=issued.api_key)
    assert_error(anonymous.get("/v1/ping"), 401, "invalid_api_key")


def test_a_key_is_stored_only_as_a_hash_and_records_its_last_use(anonymous, merchant):
    issued = api_key_create(merchant=merchant, mode="live")
    assert issued.secret.startswith("sk_live_")
    assert issued.secret not in str(issued.api_key.__dict__)
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    anonymous.get("/v1/ping")
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None


def test_a_test_key_cannot_pass_for_a_live_key(anonymous, merchant):
    issued = api_key_create(merchant=merchant, mode="test")
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer " + issued.secret.replace("_test_", "_live_"))
    assert_error(anonymous.get("/v1/ping"), 401, "invalid_api_key")


def test_unknown_paths_and_methods_answer_in_the_error_shape(api):
    assert_error(api.get("/v1/nothing-here"), 404, "resource_missing")
    assert_error(api.delete("/v1/payments"), 405, "method_not_allowed")


def test_malformed_json_is_a_400(api):
    response = api.generic("POST", "/v1/payments", "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_json")


def test_a_body_that_is_not_an_object_is_a_400(api):
    assert_error(api.post("/v1/payments", [1, 2], format="json"), 400, "parameter_invalid")


def test_throttling_answers_429_with_retry_after(api, settings):
    from django.core.cache import cache

    cache.clear()
    settings.API_THROTTLE_RATE = "3/minute"
    codes = [api.get("/v1/ping").status_code for _ in range(4)]
    response = api.get("/v1/ping")
    cache.clear()
    assert codes == [200, 200, 200, 429]
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


def test_a_request_with_a_freshly_used_key_writes_nothing_for_the_key(anonymous, merchant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    issued = api_key_create(merchant=merchant)
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    with CaptureQueriesContext(connection) as first:
        anonymous.get("/v1/ping")
    with CaptureQueriesContext(connection) as second:
        anonymous.get("/v1/ping")
    touched = [
        q["sql"] for q in first.captured_queries if q["sql"].startswith("UPDATE `ledger_apikey`")
    ]
    assert len(touched) == 1  # the first use is recorded
    assert not any("UPDATE" in q["sql"] for q in second.captured_queries)


# --- bodies that reached a 500 (issue 13, item 6) -------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # A metadata key with a lone surrogate: MariaDB refused the JSON (4025), a 500.
        '"metadata": {"\\ud800": "x"}',
        # ... and a value, and a lone low surrogate in a key.
        '"metadata": {"k": "\\udfff"}',
        '"metadata": {"a\\udc00b": "x"}',
    ],
)
def test_a_string_that_is_not_unicode_is_a_400_and_is_not_echoed(api, raw):
    body = json.dumps({"amount": 100, "currency": "EUR", "card": CARD})[:-1] + ", " + raw + "}"
    response = api.post("/v1/payments", body, content_type="application/json")
    error = assert_error(response, 400, "malformed_json")
    assert "\\ud" not in response.content.decode()
    assert error["param"] is None
    assert not Transaction.objects.exists()


def test_json_nested_100000_deep_is_a_400(api):
    raw = '{"metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = api.post("/v1/payments", raw, content_type="application/json")
    error = assert_error(response, 400, "malformed_json")
    assert "nested" in error["message"]


def test_json_nested_a_little_is_still_refused_by_the_fields_not_the_parser(api):
    response = api.post(
        "/v1/payments",
        '{"amount": 100, "currency": "EUR", "token": "tok_x", "metadata": {"k": [[[1]]]}}',
        content_type="application/json",
    )
    assert_error(response, 400, "parameter_invalid", "metadata[k]")
