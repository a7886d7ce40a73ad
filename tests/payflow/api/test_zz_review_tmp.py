"""Scratch review tests (to be deleted)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import OperationalError, connection, connections

from ledger.models import Transaction
from ledger.services.api_keys import api_key_create
from payflow.models import IdempotencyRecord
from tests.payflow.api.conftest import CARD, RecordingClient


def client_for(request, merchant):
    secret = api_key_create(merchant=merchant).secret
    client = RecordingClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    request.node.recording_clients.append(client)
    return client, secret


def flaky_once(monkeypatch, module, name, errno=1213):
    original = getattr(module, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError(errno, "Deadlock found when trying to get lock")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


# --- 1: a retried transaction after the claim was inserted -----------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_key", [False, True])
def test_deadlock_after_claim_insert_is_retried(request, merchant, monkeypatch, with_key):
    from outbox import receivers

    client, _ = client_for(request, merchant)
    token = client.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    calls = flaky_once(monkeypatch, receivers, "_insert_events")
    headers = {"HTTP_IDEMPOTENCY_KEY": "dl-1"} if with_key else {}
    body = {"amount": 1000, "currency": "EUR", "token": token, "cvc": "123"}
    response = client.post("/v1/payments", body, format="json", **headers)
    print("with_key", with_key, response.status_code, response.json(), "flush calls", calls)
    print("payments", Transaction.objects.filter(type="payment").count(),
          "records", list(IdempotencyRecord.objects.values("state", "object_kind")))
    assert response.status_code == 201, response.json()


# --- 2: stored answer == returned answer -----------------------------------------------


@pytest.mark.parametrize(
    "number,capture", [("4242424242424242", True), ("4242424242424242", False),
                       ("4000000000000002", True)]
)
def test_replay_equals_first_answer(api, number, capture):
    body = {"amount": 1500, "currency": "EUR", "card": {**CARD, "number": number},
            "capture": capture}
    first = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="eq")
    again = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="eq")
    print(first.status_code, again.status_code)
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    for header in ("ETag", "Location"):
        assert again.get(header) == first.get(header), header
    assert again["Idempotent-Replayed"] == "true"


# --- 3: the cost of forget() on a warm cache ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_forget_cost_on_a_warm_token_cache(request, merchant, settings):
    from ledger.services import vault
    from payflow.platform import caches

    settings.API_CACHE_SECONDS = 60
    client, _ = client_for(request, merchant)
    token = client.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    body = {"amount": 1000, "currency": "EUR", "token": token, "cvc": "123"}

    def timed(n=20):
        start = time.perf_counter()
        for _ in range(n):
            assert client.post("/v1/payments", body, format="json").status_code == 201
        return (time.perf_counter() - start) / n

    cold = timed()
    for _ in range(9_990):
        pk = uuid.uuid4()
        vault._TOKENS.put(pk, object(), tags=[caches.tag("ledger.cardtoken", pk)])
    start = time.perf_counter()
    for _ in range(100):
        caches.forget("ledger.transaction", uuid.uuid4())
    one = (time.perf_counter() - start) / 100
    warm = timed()
    print(f"payment cold cache {cold * 1e3:.1f} ms, 10k tokens cached {warm * 1e3:.1f} ms; "
          f"one forget {one * 1e3:.2f} ms")


# --- 4: the relay loop ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_relay_polls_a_partition_held_behind_a_dead_event_forever(request, merchant, settings):
    from django.test.utils import CaptureQueriesContext

    from outbox.models import EventStatus, OutboxEvent
    from outbox.relay import RelayLoop

    client, _ = client_for(request, merchant)
    body = {"amount": 1000, "currency": "EUR", "card": CARD}
    assert client.post("/v1/payments", body, format="json").status_code == 201
    events = list(OutboxEvent.objects.order_by("sequence"))
    first = events[0]
    OutboxEvent.objects.filter(pk=first.pk).update(status=EventStatus.DEAD)
    loop = RelayLoop()
    waits = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            published = loop.step()
            waits.append(loop.next_wait(published))
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].startswith(("UPDATE", "INSERT"))]
    print(f"{len(events)} events, 1 dead; 20 rounds: {len(queries.captured_queries)} queries, "
          f"{len(writes)} writes; waits {waits[-3:]}; still pending:",
          OutboxEvent.objects.filter(status=EventStatus.PENDING).count())


def test_relay_heartbeat_is_touched_while_every_round_fails(monkeypatch, settings):
    from outbox import relay

    beats = []
    rounds = {"n": 0}

    def broken():
        rounds["n"] += 1
        raise OperationalError(2003, "Can't connect to MySQL server")

    loop = relay.RelayLoop()
    monkeypatch.setattr(loop, "step", broken)
    monkeypatch.setattr(relay.time, "sleep", lambda s: None)
    monkeypatch.setattr(relay.connection, "close", lambda: None)
    relay.run_forever(loop, stop=lambda: rounds["n"] >= 5, heartbeat=lambda: beats.append(1))
    print("failed rounds", rounds["n"], "heartbeats", len(beats))
    assert len(beats) == 0, "heartbeat says healthy although no round succeeded"


def concurrently(n, fn):
    barrier = threading.Barrier(n, timeout=30)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(fn())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["pay_token", "refund", "capture"])
def test_concurrent_same_key(request, merchant, endpoint):
    from collections import Counter
    client, secret = client_for(request, merchant)
    token = client.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    if endpoint == "pay_token":
        path, body = "/v1/payments", {"amount": 1000, "currency": "EUR", "token": token, "cvc": "123"}
    else:
        p = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "token": token,
                                         "capture": endpoint != "capture"}, format="json").json()
        if endpoint == "refund":
            path, body = f"/v1/payments/{p['id']}/refunds", {"amount": 100}
        else:
            path, body = f"/v1/payments/{p['id']}/capture", {"amount": 400}

    def send():
        c = RecordingClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        r = c.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="same")
        j = r.json()
        return r.status_code, j.get("id") or j.get("error", {}).get("code")

    results = concurrently(16, send)
    print(endpoint, Counter(results))
    print(Counter(Transaction.objects.values_list("type", "status")))
    assert len(results) == 16
    assert {code for code, _ in results} <= {200, 201, 409}


def test_relay_one_failing_partition_starves_the_later_ones(monkeypatch):
    from outbox import relay

    called = []

    def fake_relay_partition(partition, *, time_budget):
        called.append(partition)
        if partition == 2:
            raise RuntimeError("marking 3 outbox events published updated 2 rows")
        return relay.RelayReport(partition=partition, published=1)

    monkeypatch.setattr(relay, "partitions_pending", lambda: [2, 5, 7])
    monkeypatch.setattr(relay, "relay_partition", fake_relay_partition)
    monkeypatch.setattr(relay.time, "sleep", lambda s: None)
    monkeypatch.setattr(relay.connection, "close", lambda: None)
    loop = relay.RelayLoop()
    relay.run_forever(loop, stop=lambda: loop.rounds >= 10)
    print("partitions relayed in 10 rounds:", sorted(set(called)), len(called))
    assert {5, 7} <= set(called)
