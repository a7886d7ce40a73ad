"""Found by the fault drills (issue 19, tests/drill/): what a merchant is answered while a
part of the platform is briefly gone.

- Redis stopped (``CACHE_URL``, shared by every web process for the rate limit): every
  request answered 500 ``internal_error`` (``redis.exceptions.ConnectionError``). The rate
  limit now fails open.
- The database lost during a Galera failover (``OperationalError 2013``): 500
  ``internal_error``. Now 503 ``service_unavailable`` with ``Retry-After``, in the error
  shape, and the retry with the same Idempotency-Key does the work exactly once.
"""

from __future__ import annotations

import datetime

import pytest
from django.db import OperationalError
from django.utils import timezone

from ledger.models import Transaction, TransactionType
from ledger.services.settlement import settlement_run
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
