"""The request path's process caches (issue 17; ``payflow.platform.caches``): API keys with
their merchant and card tokens are read once per ``API_CACHE_SECONDS``. A revocation,
suspension or erasure made in this process takes effect for its next request; one made by
another process (here: the row changed behind this process's back) within the bound."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger.models import ApiKey, CardToken, Merchant
from ledger.services.api_keys import api_key_create, api_key_revoke
from ledger.services.merchants import merchant_suspend
from payflow.operations import operator_cardholder_erase
from payflow.platform.guards import sanctioned_writes
from tests.payflow.api.conftest import CARD, RecordingClient, assert_error

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 0.6  # API_CACHE_SECONDS in these tests


@pytest.fixture(autouse=True)
def short_bound(settings):
    settings.API_CACHE_SECONDS = BOUND


def client_for(request, merchant) -> tuple[RecordingClient, ApiKey]:
    issued = api_key_create(merchant=merchant)
    client = RecordingClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    request.node.recording_clients.append(client)
    return client, issued.api_key


def pay(client, token):
    body = {"amount": 1000, "currency": "EUR", "token": token, "cvc": "123"}
    return client.post("/v1/payments", body, format="json")


def reads_of(table: str, queries) -> int:
    return sum(f"FROM `{table}`" in query["sql"] for query in queries.captured_queries)


def test_a_known_key_is_read_once_per_bound_and_zero_turns_the_cache_off(
    request, merchant, settings
):
    client, _key = client_for(request, merchant)
    assert client.get("/v1/ping").status_code == 200
    with CaptureQueriesContext(connection) as cached:
        assert client.get("/v1/ping").status_code == 200
    assert reads_of("ledger_apikey", cached) == 0
    time.sleep(BOUND + 0.1)
    with CaptureQueriesContext(connection) as expired:
        assert client.get("/v1/ping").status_code == 200
    assert reads_of("ledger_apikey", expired) == 1
    settings.API_CACHE_SECONDS = 0
    for _ in range(2):
        with CaptureQueriesContext(connection) as off:
            assert client.get("/v1/ping").status_code == 200
        assert reads_of("ledger_apikey", off) == 1


def test_a_key_revoked_in_this_process_stops_at_once(request, merchant):
    client, key = client_for(request, merchant)
    assert client.get("/v1/ping").status_code == 200
    api_key_revoke(api_key=key)
    assert_error(client.get("/v1/ping"), 401, "invalid_api_key")


def test_a_key_revoked_by_another_process_stops_within_the_bound(request, merchant):
    client, key = client_for(request, merchant)
    assert client.get("/v1/ping").status_code == 200
    with sanctioned_writes():  # as the other process's commit looks from here
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    time.sleep(BOUND + 0.1)
    assert_error(client.get("/v1/ping"), 401, "invalid_api_key")


def test_a_suspension_takes_effect_at_once_here_and_within_the_bound_elsewhere(
    request, merchant, other_merchant
):
    client, _key = client_for(request, merchant)
    token = client.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    assert pay(client, token).status_code == 201
    merchant_suspend(merchant=merchant)
    assert_error(pay(client, token), 403, "merchant_inactive")

    other, _ = client_for(request, other_merchant)
    other_token = other.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    assert pay(other, other_token).status_code == 201
    with sanctioned_writes():
        Merchant.objects.filter(pk=other_merchant.pk).update(status="suspended")
    time.sleep(BOUND + 0.1)
    assert_error(pay(other, other_token), 403, "merchant_inactive")


def test_an_erased_cardholders_token_is_gone_for_the_next_payment(request, merchant):
    client, _key = client_for(request, merchant)
    created = client.post("/v1/tokens", {"card": CARD}, format="json").json()
    assert pay(client, created["id"]).status_code == 201
    with CaptureQueriesContext(connection) as cached:
        assert pay(client, created["id"]).status_code == 201
    assert reads_of("ledger_cardtoken", cached) == 0  # the token was cached
    token_id = CardToken.objects.get(merchant=merchant).pk
    operator_cardholder_erase(token_id=token_id, reason="GDPR request #7")
    assert_error(pay(client, created["id"]), 404, "resource_missing")


def test_a_token_of_another_merchant_or_mode_is_not_found_even_when_cached(
    request, merchant, other_merchant
):
    client, _key = client_for(request, merchant)
    other, _ = client_for(request, other_merchant)
    token = client.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    assert pay(client, token).status_code == 201  # cached now
    assert_error(pay(other, token), 404, "resource_missing")


def test_a_cached_account_that_is_gone_empties_the_cache_and_the_payment_goes_through(
    request, merchant
):
    """Accounts are cached for the life of the process (their identity never changes). If
    one disappears under it (a database restored to an earlier point; the suite's flushes
    under its long-lived worker and gunicorn), the journal line's foreign key fails: the
    cache is emptied and the transaction run again, never a 500."""
    from ledger.models import Account
    from ledger.services import journal
    from payflow.platform.db import TRANSACTION_RETRIES

    client, _key = client_for(request, merchant)
    token = client.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    assert pay(client, token).status_code == 201  # the accounts are cached now
    entries = list(journal._ACCOUNTS._entries.items())
    assert entries
    for key, (expires, account, tags) in entries:
        ghost = Account(pk=10**9 + account.pk, kind=account.kind, currency=account.currency)
        ghost.livemode, ghost.owner = account.livemode, account.owner
        journal._ACCOUNTS._entries[key] = (expires, ghost, tags)
    retries = TRANSACTION_RETRIES.labels(reason="stale_cache")._value.get()
    response = pay(client, token)
    assert response.status_code == 201, response.content
    assert TRANSACTION_RETRIES.labels(reason="stale_cache")._value.get() == retries + 1
    assert all(entry[1].pk < 10**9 for entry in journal._ACCOUNTS._entries.values())
