"""The dispatcher's delivery half, in this process against a real HTTP receiver on
loopback: what is owed, signed, ordered, retried, given up and resent. (The Kafka half and
the real processes: ``tests/e2e/test_webhooks_e2e.py``.)"""

import contextlib
import datetime
import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.db import OperationalError
from django.utils import timezone

from ledger.services.merchants import merchant_create
from ledger.services.payments import payment_capture, payment_update
from ledger.services.refunds import refund_create
from outbox.models import OutboxEvent
from payflow.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payflow.webhooks import dispatch, endpoints, signing
from tests.infra.webhooks import Receiver
from tests.ledger.conftest import pay
from tests.payflow.api import openapi

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def merchant():
    return merchant_create(name="Hooked Shop")


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_RETRY_BASE = datetime.timedelta(milliseconds=100)
    settings.WEBHOOK_RETRY_MAX_DELAY = datetime.timedelta(milliseconds=400)
    settings.WEBHOOK_TIMEOUT = datetime.timedelta(seconds=1)
    return settings


def subscribe(merchant, receiver, events=("*",)):
    return endpoints.webhook_endpoint_create(
        merchant=merchant, livemode=False, url=receiver.url, enabled_events=list(events)
    )


def owe_everything():
    return dispatch.owe(list(OutboxEvent.objects.values_list("id", flat=True)))


def drain(until, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatch.deliver_due()
        if until():
            return
        time.sleep(0.05)
    raise TimeoutError("deliveries did not finish")


def stripe_style_verify(body: bytes, header: str, secret: str) -> bool:
    """What a merchant's existing Stripe helper does, written from Stripe's docs."""
    items = [item.split("=", 1) for item in header.split(",")]
    stamp = next(value for key, value in items if key == "t")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in items if key == "v1")


def lifecycle(merchant):
    payment = pay(merchant, amount=5_000, capture=False)
    payment = payment_capture(payment=payment)
    refund_create(payment=payment, amount=1_000)
    return payment


def test_every_subscribed_event_is_owed_once_signed_and_delivered_in_object_order(
    merchant, fast_retries
):
    with Receiver() as receiver:
        made = subscribe(merchant, receiver)
        only_captures = subscribe(merchant, receiver, ["payment.captured"])
        lifecycle(merchant)
        events = OutboxEvent.objects.count()
        assert owe_everything() == events + 1
        assert owe_everything() == events + 1  # read twice (a redelivered batch): owed once
        assert WebhookDelivery.objects.count() == events + 1
        drain(lambda: not WebhookDelivery.objects.filter(status="pending").exists())
        seen = receiver.received
    assert len(seen) == events + 1
    to_all = [
        r for r in seen if stripe_style_verify(r.body, r.headers["payflow-signature"], made.secret)
    ]
    assert len(to_all) == events
    for request in to_all:
        assert stripe_style_verify(request.body, request.headers["payflow-signature"], made.secret)
        signing.verify(request.body, request.headers["payflow-signature"], made.secret)
        assert not stripe_style_verify(
            request.body, request.headers["payflow-signature"], only_captures.secret
        )
    bodies = [json.loads(request.body) for request in to_all]
    # per object, in version order; each body is the API's event
    for object_id in {body["data"]["object"]["id"] for body in bodies}:
        versions = [
            b["data"]["object"]["version"] for b in bodies if b["data"]["object"]["id"] == object_id
        ]
        assert versions == sorted(versions), object_id
    assert {b["type"] for b in bodies} >= {"payment.created", "payment.captured", "refund.created"}
    for request, body in zip(to_all, bodies, strict=True):
        assert openapi.errors("EventOut", body) == [], body["type"]
        assert request.headers["payflow-event-id"] == body["id"]
        assert request.headers["content-type"] == "application/json"
    assert WebhookAttempt.objects.filter(status_code=200).count() == events + 1


def test_a_failing_receiver_is_retried_with_backoff_and_later_events_of_the_object_wait(
    merchant, fast_retries
):
    with Receiver(script=[500, 500, 500]) as receiver:
        subscribe(merchant, receiver)
        pay(merchant, amount=2_000, capture=False)
        owe_everything()
        first = WebhookDelivery.objects.order_by("sequence").first()
        drain(lambda: not WebhookDelivery.objects.filter(status="pending").exists())
        seen = receiver.received
    ids = [json.loads(request.body)["id"] for request in seen]
    # the first event four times (the same id), and nothing else until it got its 200
    assert ids[:4] == [ids[0]] * 4
    assert len(set(ids[4:])) == len(ids[4:])
    assert ids[0] not in ids[4:]
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen[:4])]
    assert all(gap >= 0.04 for gap in gaps), gaps  # full jitter over 100, 200, 400 ms
    first.refresh_from_db()
    assert (first.status, first.attempts) == ("succeeded", 4)
    tries = list(WebhookAttempt.objects.filter(delivery=first).order_by("id"))
    assert [t.status_code for t in tries] == [500, 500, 500, 200]
    assert tries[0].response_excerpt == "answered 500"


def test_after_the_retry_span_the_delivery_fails_and_the_endpoint_is_disabled_with_a_reason(
    merchant, fast_retries
):
    fast_retries.WEBHOOK_RETRY_SPAN = datetime.timedelta(seconds=1)
    with Receiver(default=503) as receiver:
        made = subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=2_000)
        owe_everything()
        drain(lambda: WebhookDelivery.objects.filter(status="failed").exists())
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts >= 2
    endpoint = WebhookEndpoint.objects.get(pk=made.endpoint.pk)
    assert endpoint.status == "disabled"
    assert "HTTP 503" in endpoint.disabled_reason
    # nothing more is owed to a disabled endpoint
    pay(merchant, amount=3_000)
    owe_everything()
    assert WebhookDelivery.objects.count() == 1


def test_a_receiver_that_never_answers_is_cut_off_by_the_timeout(merchant, fast_retries):
    with Receiver(hang=True) as receiver:
        subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=2_000)
        owe_everything()
        started = time.monotonic()
        dispatch.deliver_due()
        took = time.monotonic() - started
    assert took < 5
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (None, "timed out")
    assert WebhookDelivery.objects.get().status == "pending"


def test_a_resend_delivers_the_same_event_again(merchant, fast_retries):
    with Receiver() as receiver:
        subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=2_000)
        owe_everything()
        drain(lambda: WebhookDelivery.objects.filter(status="succeeded").exists())
        delivery = WebhookDelivery.objects.get()
        endpoints.webhook_delivery_resend(delivery=delivery)
        drain(lambda: len(receiver.received) == 2)
        seen = receiver.received
    assert seen[0].body == seen[1].body
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_a_prefix_subscribes_to_every_type_it_starts(merchant, fast_retries):
    with Receiver() as receiver:
        subscribe(merchant, receiver, ["refund.*"])
        lifecycle(merchant)
        owe_everything()
    assert set(WebhookDelivery.objects.values_list("event_type", flat=True)) == {
        "refund.created",
        "refund.succeeded",
    }


def test_events_before_the_endpoint_existed_and_other_merchants_events_are_not_owed(merchant):
    before = pay(merchant, amount=1_000)
    other = merchant_create(name="Other Shop")
    with Receiver() as receiver:
        subscribe(merchant, receiver)
        pay(other, amount=1_000)
        owe_everything()
    assert WebhookDelivery.objects.count() == 0
    assert OutboxEvent.objects.filter(aggregate_id=str(before.pk)).exists()


def test_during_the_grace_period_both_secrets_sign(merchant, fast_retries):
    with Receiver() as receiver:
        made = subscribe(merchant, receiver, ["payment.created"])
        rolled = endpoints.webhook_endpoint_roll_secret(
            endpoint=made.endpoint, grace=datetime.timedelta(hours=1)
        )
        pay(merchant, amount=2_000)
        owe_everything()
        drain(lambda: len(receiver.received) == 1)
        [request] = receiver.received
    header = request.headers["payflow-signature"]
    assert header.count("v1=") == 2
    assert stripe_style_verify(request.body, header, made.secret)
    assert stripe_style_verify(request.body, header, rolled.secret)


def test_a_receivers_answer_is_kept_as_an_excerpt_without_card_numbers(merchant, fast_retries):
    answer = b"error: card 4242 4242 4242 4242 refused " + b"x" * 2_000
    with Receiver(script=[500], answer=answer) as receiver:
        subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=2_000)
        owe_everything()
        dispatch.deliver_due()
    excerpt = WebhookAttempt.objects.get().response_excerpt
    assert excerpt.startswith("error: card ")
    assert "4242 4242" not in excerpt
    assert len(excerpt) == 500


def test_the_system_check_warns_when_events_are_purged_before_their_webhooks_give_up(settings):
    settings.OUTBOX_RETENTION_HOURS = 72
    assert "payflow.W003" in {message.id for message in run_checks()}
    settings.OUTBOX_RETENTION_HOURS = 96
    assert "payflow.W003" not in {message.id for message in run_checks()}


@pytest.mark.kafka
def test_a_batch_the_database_did_not_take_is_read_again_not_skipped(
    merchant, kafka_settings, settings, monkeypatch
):
    from confluent_kafka import Consumer

    from outbox import relay
    from payflow.platform import kafka

    settings.KAFKA_TOPIC_PREFIX = f"t{uuid.uuid4().hex[:12]}."
    settings.WEBHOOK_CONSUMER_GROUP = f"test-{uuid.uuid4().hex}"
    relay.reset_producer()
    with Receiver() as receiver:
        subscribe(merchant, receiver)
        pay(merchant, amount=2_000)
    relay.relay_all()
    expected = OutboxEvent.objects.count()
    consumer = Consumer(dispatch.consumer_config())
    consumer.subscribe([kafka.topic(name) for name in dispatch.TOPICS])
    real_owe = dispatch.owe
    failures = []

    def database_away(event_ids):
        failures.append(len(event_ids))
        raise OperationalError("the database went away")

    try:
        monkeypatch.setattr(dispatch, "owe", database_away)
        deadline = time.monotonic() + 30
        while not failures and time.monotonic() < deadline:
            with contextlib.suppress(OperationalError):
                dispatch.ingest(consumer, timeout=0.5)
        assert failures, "no batch was read"
        assert WebhookDelivery.objects.count() == 0
        monkeypatch.setattr(dispatch, "owe", real_owe)
        deadline = time.monotonic() + 30
        while WebhookDelivery.objects.count() < expected and time.monotonic() < deadline:
            dispatch.ingest(consumer, timeout=0.5)
    finally:
        consumer.close()
        relay.reset_producer()
    assert WebhookDelivery.objects.count() == expected


def test_finished_deliveries_are_purged_after_the_retention_pending_ones_never(
    merchant, fast_retries
):
    from payflow.tasks import webhook_deliveries_purge_task

    with Receiver(script=[200, 500]) as receiver:
        subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=1_000)
        pay(merchant, amount=2_000)
        owe_everything()
        dispatch.deliver_due()
    assert sorted(WebhookDelivery.objects.values_list("status", flat=True)) == [
        "pending",
        "succeeded",
    ]
    assert webhook_deliveries_purge_task() == {"deleted": 0}  # too young
    later = timezone.now() + fast_retries.WEBHOOK_DELIVERY_RETENTION + datetime.timedelta(hours=1)
    assert endpoints.webhook_deliveries_purge(now=later) == 1
    [left] = WebhookDelivery.objects.all()
    assert left.status == "pending"
    assert WebhookAttempt.objects.filter(delivery=left).count() == 1
    assert WebhookAttempt.objects.count() == 1


def test_metrics_show_what_merchants_are_owed(merchant, fast_retries, client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with Receiver(default=500) as receiver:
        made = subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=1_000)
        owe_everything()
        dispatch.deliver_due()
    endpoints.webhook_endpoint_disable(endpoint_id=made.endpoint.pk, reason="failed for 3 days")
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'payflow_webhook_deliveries{status="pending"} 1.0' in text
    assert "payflow_webhook_endpoints_disabled 1.0" in text
    assert 'payflow_metrics_collect_errors{part="webhooks"} 0.0' in text


# --- found by review: each failed before its fix ---------------------------------------
def test_an_object_stuck_behind_a_failing_event_never_starves_other_endpoints(
    merchant, fast_retries
):
    fast_retries.WEBHOOK_RETRY_BASE = datetime.timedelta(minutes=5)
    stuck = subscribe_url(merchant, "http://127.0.0.1:9/dead")
    payment = pay(merchant, amount=1_000)
    for number in range(60):  # 60 deliveries of one object wait behind its first
        payment = payment_update(payment=payment, metadata={"n": str(number)})
    owe_everything()
    dispatch.deliver_due()  # the first one fails and waits minutes
    other = merchant_create(name="Other Shop")
    with Receiver() as receiver:
        subscribe(other, receiver, ["payment.created"])
        pay(other, amount=2_000)
        owe_everything()
        dispatch.deliver_due()
        assert len(receiver.received) == 1
    assert WebhookDelivery.objects.filter(endpoint=stuck.endpoint, status="pending").count() > 60


def subscribe_url(merchant, url, events=("*",)):
    return endpoints.webhook_endpoint_create(
        merchant=merchant, livemode=False, url=url, enabled_events=list(events)
    )


def test_a_capture_read_before_its_creation_still_arrives_after_it(merchant, fast_retries):
    with Receiver() as receiver:
        subscribe(merchant, receiver, ["payment.*"])
        pay(merchant, amount=2_000)
        by_sequence = list(OutboxEvent.objects.order_by("sequence"))
        # Kafka gives the capture (transactions.completed) first: its topic was read first
        dispatch.owe([by_sequence[-1].pk])
        drain(lambda: len(receiver.received) == len(by_sequence))
        types = [json.loads(request.body)["type"] for request in receiver.received]
        dispatch.owe([event.pk for event in by_sequence])  # their own messages: nothing new
        dispatch.deliver_due()
        assert len(receiver.received) == len(by_sequence)
    assert types == ["payment.created", "payment.authorized", "payment.captured"]


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_timeout(merchant, fast_retries):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def drip():
        connection, _ = listener.accept()
        connection.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            try:
                connection.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
        connection.close()

    threading.Thread(target=drip, daemon=True).start()
    subscribe_url(merchant, f"http://127.0.0.1:{listener.getsockname()[1]}/", ["payment.created"])
    pay(merchant, amount=1_000)
    owe_everything()
    started = time.monotonic()
    dispatch.deliver_due()
    took = time.monotonic() - started
    listener.close()
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (None, "timed out")
    assert took < 3  # WEBHOOK_TIMEOUT is 1 s; the drip would take 12 s
    assert WebhookDelivery.objects.get().status == "pending"


def test_a_delivery_that_cannot_be_prepared_is_recorded_and_retried_not_left_claimed(
    merchant, fast_retries
):
    with Receiver() as receiver:
        subscribe(merchant, receiver, ["payment.created"])
        pay(merchant, amount=1_000)
        owe_everything()
        WebhookEndpoint.objects.update(secret_sealed=b"\x00\x01" + b"\x00" * 40)  # unreadable
        dispatch.deliver_due()
        assert receiver.received == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.error.startswith("not sent: PayFlow could not prepare it")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.claimed_until) == ("pending", None)
    assert delivery.next_attempt_at < timezone.now() + datetime.timedelta(seconds=5)


def test_an_endpoint_enabled_again_gets_a_fresh_retry_span(merchant, fast_retries):
    made = subscribe_url(merchant, "http://127.0.0.1:9/dead")
    pay(merchant, amount=1_000)
    owe_everything()
    long_ago = timezone.now() - datetime.timedelta(days=4)
    WebhookDelivery.objects.update(first_attempt_at=long_ago, attempts=12)
    endpoints.webhook_endpoint_disable(endpoint_id=made.endpoint.pk, reason="failed")
    endpoint = WebhookEndpoint.objects.get()
    endpoints.webhook_endpoint_update(endpoint=endpoint, disabled=False)
    dispatch.deliver_due()  # each fails (nothing listens on port 9) …
    endpoint.refresh_from_db()
    assert endpoint.status == "enabled"  # … but the span starts again: not disabled at once
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"pending"}


def test_a_resend_is_refused_while_an_attempt_is_in_flight(merchant, fast_retries):
    subscribe_url(merchant, "http://127.0.0.1:9/dead", ["payment.created"])
    pay(merchant, amount=1_000)
    owe_everything()
    delivery = WebhookDelivery.objects.get()
    assert dispatch.claim(delivery)
    with pytest.raises(endpoints.DeliveryInProgress):
        endpoints.webhook_delivery_resend(delivery=delivery)
    dispatch.record(delivery, dispatch.Answer(500, 3))
    resent = endpoints.webhook_delivery_resend(delivery=WebhookDelivery.objects.get())
    assert (resent.status, resent.attempts, resent.first_attempt_at) == ("pending", 0, None)


def test_the_backoff_never_overflows():
    assert dispatch.backoff(1_100) <= settings.WEBHOOK_RETRY_MAX_DELAY


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    merchant, fast_retries, monkeypatch
):
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        lookups = []

        def resolve(host, port_):
            lookups.append(host)
            return ["127.0.0.1"]  # the only answer: a second lookup of this name fails

        monkeypatch.setattr(endpoints, "resolve", resolve)
        subscribe_url(merchant, f"http://hooks.payflow.invalid:{port}/in", ["payment.created"])
        pay(merchant, amount=1_000)
        owe_everything()
        dispatch.deliver_due()
        [request] = receiver.received
    assert request.headers["host"] == f"hooks.payflow.invalid:{port}"
    assert lookups == ["hooks.payflow.invalid", "hooks.payflow.invalid"]  # create, delivery


def test_after_a_vault_key_rotation_secrets_are_resealed_and_the_old_key_can_go(
    merchant, fast_retries, settings
):
    import base64

    from payflow.tasks import webhook_secrets_reseal_task

    with Receiver() as receiver:
        made = subscribe(merchant, receiver, ["payment.created"])
        old = dict(settings.VAULT_KEYS)
        newest = max(old) + 1
        settings.VAULT_KEYS = {**old, newest: base64.b64decode(NEW_KEY)}
        assert webhook_secrets_reseal_task() == {"resealed": 1}
        assert webhook_secrets_reseal_task() == {"resealed": 0}  # once
        settings.VAULT_KEYS = {newest: base64.b64decode(NEW_KEY)}  # the old keys retired
        pay(merchant, amount=1_000)
        owe_everything()
        dispatch.deliver_due()
        [request] = receiver.received
    assert stripe_style_verify(request.body, request.headers["payflow-signature"], made.secret)


NEW_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
