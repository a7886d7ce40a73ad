"""Webhooks end to end, every part real: the ledger commits in this process, the session's
Celery worker process relays the outbox to the Kafka-protocol broker, the dispatcher runs
as its own process (``manage.py webhook_dispatcher``, consuming the topics in its consumer
group) and delivers to a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid

import pytest

from ledger.services.merchants import merchant_create
from ledger.services.payments import payment_capture, payment_update
from ledger.services.refunds import refund_create
from outbox.models import OutboxEvent
from payflow.models import WebhookDelivery, WebhookEndpoint
from payflow.platform import db
from payflow.webhooks import endpoints
from tests.infra.gunicorn import database_url
from tests.infra.webhooks import DispatcherProcess, Receiver
from tests.ledger.conftest import pay

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.django_db(transaction=True),
]


class RolledBack(Exception):
    pass


def verified(request, secret: str) -> bool:
    """Stripe's verification, written from its documentation."""
    items = [item.split("=", 1) for item in request.headers["payflow-signature"].split(",")]
    stamp = next(value for key, value in items if key == "t")
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + request.body, hashlib.sha256)
    return any(hmac.compare_digest(mac.hexdigest(), v) for key, v in items if key == "v1")


def dispatcher(infra_dir, kafka_broker, **env: str) -> DispatcherProcess:
    return DispatcherProcess(
        infra_dir / f"webhooks-{uuid.uuid4().hex[:6]}",
        {
            "DATABASE_URL": database_url(),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "WEBHOOK_CONSUMER_GROUP": f"test-webhooks-{uuid.uuid4().hex}",
            "WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST": "True",
            **env,
        },
    )


def wait_until(condition, timeout: float, what: str, process: DispatcherProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.process.poll() is None, process.log_tail()
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout} s\n{process.log_tail()}")


def test_a_payment_lifecycle_is_pushed_signed_in_object_order_retried_and_never_lost(
    infra_dir, kafka_broker, relay_process
):
    merchant = merchant_create(name="Webhook Shop")
    with (
        Receiver(fail_first_event=3) as receiver,
        dispatcher(
            infra_dir, kafka_broker, WEBHOOK_RETRY_BASE="1s", WEBHOOK_RETRY_MAX_DELAY="2s"
        ) as process,
    ):
        made = endpoints.webhook_endpoint_create(
            merchant=merchant, livemode=False, url=receiver.url, enabled_events=["*"]
        )
        payment = pay(merchant, amount=5_000, capture=False, metadata={"order": "A-1"})
        payment = payment_capture(payment=payment)
        refund_create(payment=payment, amount=1_500)

        @db.atomic
        def change_then_fail():
            payment_update(payment=payment, metadata={"order": "never"})
            raise RolledBack

        with pytest.raises(RolledBack):
            change_then_fail()
        expected = {
            f"evt_{event_id.hex}"
            for event_id in OutboxEvent.objects.filter(merchant_id=merchant.pk).values_list(
                "id", flat=True
            )
        }
        assert len(expected) == 6  # created, authorized, captured; refund created, succeeded; …

        def all_arrived():
            ids = {json.loads(r.body)["id"] for r in receiver.received}
            return ids >= expected and not WebhookDelivery.objects.filter(status="pending").exists()

        wait_until(all_arrived, 90, "every event delivered", process)
        time.sleep(1)  # anything more would arrive now
        seen = list(receiver.received)

    bodies = [json.loads(request.body) for request in seen]
    ids = [body["id"] for body in bodies]
    assert set(ids) == expected  # no loss, and nothing from the rolled-back change
    assert "payment.updated" not in {body["type"] for body in bodies}
    assert all(verified(request, made.secret) for request in seen)
    # the first event: 500, 500, 500, then 200 after backoff, always the same event id
    first = [request for request in seen if json.loads(request.body)["id"] == ids[0]]
    assert len(first) == 4
    assert all(b.at - a.at >= 0.4 for a, b in itertools.pairwise(first))
    assert len(ids) == len(expected) + 3
    # the payment's later events waited for its first one's success
    first_object = bodies[0]["data"]["object"]["id"]
    later = [
        request.at
        for request, body in zip(seen, bodies, strict=True)
        if body["data"]["object"]["id"] == first_object and body["id"] != ids[0]
    ]
    assert later
    assert min(later) > first[-1].at
    # per object, in version order
    for object_id in {body["data"]["object"]["id"] for body in bodies}:
        versions = [
            b["data"]["object"]["version"] for b in bodies if b["data"]["object"]["id"] == object_id
        ]
        assert versions == sorted(versions), versions
    captured = next(body for body in bodies if body["type"] == "payment.captured")
    assert captured["data"]["object"]["status"] == "captured"
    assert captured["data"]["previous_attributes"]["status"] == "authorized"


def test_a_receiver_that_never_answers_gets_its_endpoint_disabled_after_the_retry_span(
    infra_dir, kafka_broker, relay_process
):
    merchant = merchant_create(name="Silent Shop")
    with (
        Receiver(hang=True) as receiver,
        dispatcher(
            infra_dir,
            kafka_broker,
            WEBHOOK_TIMEOUT="1s",
            WEBHOOK_RETRY_BASE="1s",
            WEBHOOK_RETRY_MAX_DELAY="1s",
            WEBHOOK_RETRY_SPAN="4s",
        ) as process,
    ):
        made = endpoints.webhook_endpoint_create(
            merchant=merchant,
            livemode=False,
            url=receiver.url,
            enabled_events=["payment.created"],
        )
        pay(merchant, amount=2_000)

        def disabled():
            return WebhookEndpoint.objects.get(pk=made.endpoint.pk).status == "disabled"

        wait_until(disabled, 90, "the endpoint disabled", process)
        tried = len(receiver.received)
    endpoint = WebhookEndpoint.objects.get(pk=made.endpoint.pk)
    assert "timed out" in endpoint.disabled_reason
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "failed"
    assert delivery.attempts == tried >= 2
