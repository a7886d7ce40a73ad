"""Found by the fault drills (issue 19, tests/drill/): what a merchant is answered while a
part of the platform is briefly gone.

- Redis stopped (``CACHE_URL``, shared by every web process for the rate limit): every
  request answered 500 ``internal_error`` (``redis.exceptions.ConnectionError``). The rate
  limit now fails open.
- The database lost during a Galera failover (``OperationalError 2013``): 500
  ``internal_error``. Now 503 in the error shape: ``service_unavailable`` with
  ``Retry-After`` for a request that is safe to send again (a read, or a write with an
  Idempotency-Key: the retry does the work exactly once), ``outcome_unknown`` without
  ``Retry-After`` for a write without a key, which may have committed before the
  connection was lost (found in review: "retry" there made two payouts).
"""

from __future__ import annotations

import datetime
import socket
import time

import environ
import pytest
from django.db import OperationalError
from django.utils import timezone

from ledger.models import Transaction, TransactionType
from ledger.services.settlement import settlement_run
from payflow import config
from payflow.api import views
from tests.payflow.api.conftest import CARD, assert_error, create_payment

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_payment_goes_through_while_the_shared_cache_is_unreachable(api, settings, caplog):
    # A real Redis client against a port where nothing listens: connection refused.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    body = {"amount": 2500, "currency": "EUR", "card": CARD}
    response = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="cache-down")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "captured"
    assert "API rate limit not applied: the cache is unavailable" in caplog.text


def test_a_lost_database_connection_is_a_503_and_the_retry_does_it_once(api, monkeypatch, settings):
    settings.API_THROTTLE_RATE = "1000/second"
    create_payment(api, amount=100_000)  # a balance to pay out from
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))
    calls = []

    def lost(*args, **kwargs):
        calls.append(1)
        raise OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr("payflow.api.views.payout_create", lost)
    body = {"amount": 700, "currency": "EUR"}
    answer = api.post("/v1/payouts", body, format="json", HTTP_IDEMPOTENCY_KEY="po-1")
    error = assert_error(answer, 503, "service_unavailable")
    assert "same Idempotency-Key" in error["message"]
    assert answer["Retry-After"] == "1"
    assert calls == [1]

    monkeypatch.undo()
    again = api.post("/v1/payouts", body, format="json", HTTP_IDEMPOTENCY_KEY="po-1")
    assert again.status_code == 201, again.content
    assert Transaction.objects.filter(type=TransactionType.PAYOUT, amount=700).count() == 1


def test_a_write_without_a_key_that_may_have_committed_is_not_answered_retry(
    api, monkeypatch, settings
):
    create_payment(api, amount=100_000)
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))
    real = views.payout_create

    def committed_then_lost(*args, **kwargs):
        real(*args, **kwargs)  # the payout commits ...
        raise OperationalError(2013, "Lost connection to server during query")  # ... then

    monkeypatch.setattr("payflow.api.views.payout_create", committed_then_lost)
    answer = api.post("/v1/payouts", {"amount": 800, "currency": "EUR"}, format="json")
    error = assert_error(answer, 503, "outcome_unknown")
    assert "look the object up before sending it again" in error["message"]
    assert "Retry-After" not in answer
    assert Transaction.objects.filter(type=TransactionType.PAYOUT, amount=800).count() == 1


def test_a_lock_wait_timeout_is_not_mistaken_for_an_outage(api, monkeypatch):
    def stuck(*args, **kwargs):
        raise OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")

    monkeypatch.setattr("payflow.api.views.payout_create", stuck)
    api.raise_request_exception = False
    answer = api.post("/v1/payouts", {"amount": 800, "currency": "EUR"}, format="json")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"


def test_a_hung_cache_costs_a_request_its_socket_timeout_not_its_answer(api, settings, caplog):
    """Found in review: a Redis that accepts connections and never answers (paused,
    partitioned) made each request wait for the client's default timeout (seconds), which
    took the API down as surely as a 500. CACHE_URL on Redis gets a socket timeout."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # connections complete in the backlog; nothing ever answers
    try:
        env = environ.Env()
        env.ENVIRON = {"CACHE_URL": f"rediscache://127.0.0.1:{hung.getsockname()[1]}/0"}
        cache = config.cache_settings(env)
        assert cache["OPTIONS"] == {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}
        settings.CACHES = {"default": cache}
        body = {"amount": 2500, "currency": "EUR", "card": CARD}
        started = time.monotonic()
        response = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="hung")
        elapsed = time.monotonic() - started
    finally:
        hung.close()
    assert response.status_code == 201, response.content
    assert elapsed < 5, elapsed  # without the timeout: it never returned
    assert "API rate limit not applied: the cache is unavailable" in caplog.text
