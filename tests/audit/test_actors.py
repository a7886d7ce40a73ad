"""The actor and request context reach the audit entries: API key, operator, Celery task.

The entry's canonical bytes hold who, from where and why (``entry.fields``); the indexed
columns repeat the actor and the request id for queries, and must agree with the bytes."""

import pytest

from audit.models import AuditEntry
from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_suspend
from payflow.platform import context
from tests.ledger.conftest import pay
from tests.payflow.api.conftest import CARD


def test_an_api_request_is_recorded_with_its_key_ip_user_agent_and_request_id(merchant, client):
    issued = api_key_create(merchant=merchant)
    response = client.post(
        "/v1/payments",
        {"amount": 1200, "currency": "EUR", "card": CARD},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {issued.secret}",
        HTTP_USER_AGENT="shop-backend/2.1",
        HTTP_X_REQUEST_ID="req-12345678",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "req-12345678"
    rows = list(AuditEntry.objects.filter(event_type__startswith="payment."))
    assert len(rows) == 3
    key = str(issued.api_key.pk)
    assert {(r.actor_type, r.actor_id, r.request_id) for r in rows} == {
        ("api_key", key, "req-12345678")
    }
    recorded = {
        (
            f["actor"]["type"],
            f["actor"]["id"],
            f["ip"],
            f["user_agent"],
            f["request_id"],
        )
        for f in (r.fields for r in rows)
    }
    assert recorded == {("api_key", key, "203.0.113.9", "shop-backend/2.1", "req-12345678")}


def test_a_forwarded_for_address_is_trusted_only_behind_the_configured_proxies(
    merchant, client, settings
):
    issued = api_key_create(merchant=merchant)
    headers = {
        "HTTP_AUTHORIZATION": f"Bearer {issued.secret}",
        "REMOTE_ADDR": "10.0.0.2",
        "HTTP_X_FORWARDED_FOR": "1.1.1.1, 198.51.100.7",
    }
    body = {"amount": 100, "currency": "EUR", "card": CARD}
    client.post("/v1/payments", body, content_type="application/json", **headers)
    settings.TRUSTED_PROXY_COUNT = 1
    client.post("/v1/payments", body, content_type="application/json", **headers)
    ips = [
        row.fields["ip"]
        for row in AuditEntry.objects.filter(event_type="payment.created").order_by("id")
    ]
    assert ips == ["10.0.0.2", "198.51.100.7"]


def test_an_operator_reason_is_recorded(merchant):
    with context.bind(**context.system_actor("ops-console"), reason="fraud investigation #88"):
        merchant_suspend(merchant=merchant)
    row = AuditEntry.objects.get(event_type="merchant.suspended")
    fields = row.fields
    assert (row.actor_type, row.actor_id) == ("system", "ops-console")
    assert (fields["actor"]["id"], fields["reason"]) == ("ops-console", "fraud investigation #88")


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_task_records_who_queued_it_and_its_own_task_id(celery_worker_process):
    from ledger.services.merchants import merchant_create
    from ledger.tasks import settlement_run

    # given a payment due for settlement at once
    merchant = merchant_create(name="Instant settlement", settlement_delay_days=0)
    payment = pay(merchant)
    # when an operator queues the settlement task, run by the real worker process
    with context.bind(**context.system_actor("night-operator"), request_id="req-abcdef12"):
        result = settlement_run.delay()
    assert result.get(timeout=60)["payments_settled"] == 1
    # then the worker's change names the operator, the request and the task
    row = AuditEntry.objects.get(object_id=str(payment.pk), event_type="payment.settled")
    assert (row.actor_type, row.actor_id) == ("system", "night-operator")
    fields = row.fields
    assert (row.request_id, fields["request_id"], fields["task_id"]) == (
        "req-abcdef12",
        "req-abcdef12",
        result.id,
    )


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_task_nobody_queued_acts_as_itself(celery_worker_process):
    from ledger.services.merchants import merchant_create
    from ledger.tasks import settlement_run

    merchant = merchant_create(name="Beat settlement", settlement_delay_days=0)
    payment = pay(merchant)
    with context.replaced(context.AuditContext()):  # as beat sends it: no actor
        result = settlement_run.delay()
    assert result.get(timeout=60)["payments_settled"] == 1
    row = AuditEntry.objects.get(object_id=str(payment.pk), event_type="payment.settled")
    assert (row.actor_type, row.actor_id) == ("system", "task:ledger.settlement_run")
    assert row.fields["task_id"] == result.id
