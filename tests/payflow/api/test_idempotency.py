"""Idempotency-Key: replay, reuse with another body or endpoint, concurrency."""

import datetime
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone

from ledger import ids
from ledger.models import JournalEntry, SimulatedOperation, Transaction
from ledger.services.api_keys import api_key_create
from payflow.models import IdempotencyRecord
from payflow.platform import context, faults
from tests.ledger.conftest import SimulatedCrash, crash_at
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
    assert first.status_code == second.status_code == 402
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


# --- issue 13: keys byte for byte, claims that cannot be stolen, crashes ---------------


def test_keys_that_differ_only_in_letter_case_or_accents_are_different_keys(api):
    # Reproduced before the fix on MariaDB (utf8mb4_unicode_ci on the unique index): the
    # second order replayed the first order's payment and nothing was created for it.
    for first, second in (("Order-1-aBc", "order-1-AbC"), ("café-7", "cafe-7")):
        one = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY=first)
        two = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY=second)
        assert one.status_code == two.status_code == 201
        assert not two.has_header("Idempotent-Replayed")
        assert one.json()["id"] != two.json()["id"]
    assert Transaction.objects.filter(type="payment").count() == 4
    assert IdempotencyRecord.objects.count() == 4


def test_a_key_of_255_characters_works_and_replays(api):
    key = "k" * 254 + "Z"
    first = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert (first.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert IdempotencyRecord.objects.get().key == key


def test_the_record_names_the_payment_it_created(api):
    response = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="linked")
    record = IdempotencyRecord.objects.get()
    assert (record.object_kind, record.state) == ("payment", "completed")
    assert ids.encode("payment", record.object_id) == response.json()["id"]


def concurrently(count, send):
    barrier = threading.Barrier(count, timeout=30)
    results: list = []

    def run():
        try:
            barrier.wait()
            results.append(send())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_twelve_concurrent_requests_with_one_key_answered_400_never_give_a_500(merchant):
    # Reproduced before the fix: the first request's 400 released (deleted) the record
    # between another one's failed insert and its read: IdempotencyRecord.DoesNotExist.
    secret = api_key_create(merchant=merchant).secret

    def send():
        client = RecordingClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        bad = {**BODY, "amount": "15"}
        response = client.post("/v1/payments", bad, format="json", HTTP_IDEMPOTENCY_KEY="b")
        return response.status_code, response.json()["error"]["code"]

    for _ in range(3):
        results = concurrently(12, send)
        assert len(results) == 12
        assert {code for code, _ in results} <= {400, 409}
        assert {error for code, error in results if code == 409} <= {"request_in_progress"}
        assert ("400", "parameter_invalid") not in results
    assert not IdempotencyRecord.objects.exists()
    assert not Transaction.objects.exists()


def _held_at(point):
    """A fault hook that holds the first thread reaching ``point`` until released."""
    reached, release = threading.Event(), threading.Event()

    def hold():
        if not reached.is_set():
            reached.set()
            assert release.wait(60), "the test never released the held request"

    return hold, reached, release


def _race_a_retry_against_a_held_request(merchant, point, settings):
    """Request A holds at ``point`` past its claim's lease; B, with the same key, arrives
    then; A is released after B answered. Returns (A's response, B's response)."""
    settings.IDEMPOTENCY_LOCK_SECONDS = 1
    secret = api_key_create(merchant=merchant).secret
    actor = context.current()
    hold, reached, release = _held_at(point)
    answers = {}

    def send(name):
        client = RecordingClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        answers[name] = client.post(
            "/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="held"
        )

    def first():
        try:
            with context.replaced(actor):
                send("a")
        finally:
            connections.close_all()

    with faults.hooked(point, hold):
        thread = threading.Thread(target=first)
        thread.start()
        assert reached.wait(30), f"request A never reached {point}"
        # A's last fenced transaction renewed its lease: wait until it has run out.
        record = IdempotencyRecord.objects.get()
        wait_until = record.locked_until + datetime.timedelta(milliseconds=200)
        while timezone.now() < wait_until:
            time.sleep(0.05)
        send("b")
        release.set()
        thread.join(60)
    return answers["a"], answers["b"]


@pytest.mark.django_db(transaction=True)
def test_a_claim_taken_over_before_the_intent_stops_the_old_request_committing(merchant, settings):
    # Reproduced before the fix (item 3): with the lease run out and the first request
    # still running, both requests got 201 with two different captured payments.
    a, b = _race_a_retry_against_a_held_request(merchant, "payment.before_intent", settings)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] == b.json()["id"]
    assert a["Idempotent-Replayed"] == "true"  # A reports what the key now stands for
    assert Transaction.objects.filter(type="payment").count() == 1
    assert SimulatedOperation.objects.filter(kind="authorize").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_taken_over_during_the_acquirer_call_resumes_by_inquiry_not_a_second_charge(
    merchant, settings
):
    a, b = _race_a_retry_against_a_held_request(merchant, "acquirer.authorize", settings)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] == b.json()["id"]
    assert b.json()["status"] == "captured"
    assert b["Idempotent-Replayed"] == "true"
    [payment] = Transaction.objects.filter(type="payment")
    assert (payment.status, payment.version) == ("captured", 3)
    assert SimulatedOperation.objects.filter(kind="authorize").count() == 1
    assert JournalEntry.objects.filter(transaction=payment).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_taken_over_before_the_acquirer_call_fails_and_reverses_the_payment(
    merchant, settings
):
    a, b = _race_a_retry_against_a_held_request(merchant, "payment.intent_committed", settings)
    assert (a.status_code, b.status_code) == (402, 402)
    assert a.json()["error"]["payment"] == b.json()["error"]["payment"]
    assert b.json()["error"]["decline_code"] == "acquirer_unavailable"
    [payment] = Transaction.objects.filter(type="payment")
    assert payment.status == "failed"
    # A's authorization reached the acquirer after the reversal: refused, nothing held
    auth = SimulatedOperation.objects.get(kind="authorize")
    assert (auth.approved, auth.decline_code) == (False, "reversed")
    assert not JournalEntry.objects.filter(transaction=payment).exists()


def test_a_retry_after_a_crash_during_the_acquirer_call_reports_the_one_payment(api):
    with crash_at("acquirer.authorize"), pytest.raises(SimulatedCrash):
        api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="crash")
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.object_kind) == ("in_progress", "payment")
    # within the lease: the first request might still be running
    assert_error(
        api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="crash"),
        409,
        "request_in_progress",
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(locked_until=timezone.now())
    retry = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="crash")
    assert retry.status_code == 201
    assert retry.json()["id"] == ids.encode("payment", record.object_id)
    assert retry.json()["status"] == "captured"
    assert Transaction.objects.filter(type="payment").count() == 1
    assert SimulatedOperation.objects.filter(kind="authorize").count() == 1
    again = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="crash")
    assert again.json() == retry.json()
    assert IdempotencyRecord.objects.get().state == "completed"


def test_an_unknown_outcome_answers_202_and_the_next_retry_resumes_it(api, settings):
    settings.ACQUIRER_LATENCY_SECONDS, settings.ACQUIRER_TIMEOUT_SECONDS = 1.0, 0.05
    first = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="slow")
    assert first.status_code == 202
    assert first.json()["status"] == "initiated"
    settings.ACQUIRER_LATENCY_SECONDS = 0.0
    retry = api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="slow")
    assert retry.status_code == 201
    assert (retry.json()["id"], retry.json()["status"]) == (first.json()["id"], "captured")
    assert SimulatedOperation.objects.filter(kind="authorize").count() == 1


def test_the_invariant_check_reports_records_without_their_object(api, merchant):
    from ledger.selectors import ledger_check_invariants

    api.post("/v1/payments", BODY, format="json", HTTP_IDEMPOTENCY_KEY="fine")
    assert ledger_check_invariants().ok
    now = timezone.now()
    unlinked = IdempotencyRecord.objects.create(
        merchant_id=merchant.pk, key="u", method="POST", path="/v1/payments",
        request_hash="x", locked_until=now, state="completed", response_status=201,
    )  # fmt: skip
    ghost = IdempotencyRecord.objects.create(
        merchant_id=merchant.pk, key="g", method="POST", path="/v1/payments",
        request_hash="x", locked_until=now, object_kind="payment",
        object_id="01a2364d-185f-7417-887f-3c78f8a44bde",
    )  # fmt: skip
    assert ledger_check_invariants().problems == [
        f"Idempotency-Key record {ghost.pk} names payment "
        "01a2364d-185f-7417-887f-3c78f8a44bde, which does not exist",
        f"Idempotency-Key record {unlinked.pk} answered 201 but names no object",
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["token payment", "inline card payment", "refund"])
def test_a_transaction_run_again_after_a_conflict_keeps_its_idempotency_claim(
    api, merchant, monkeypatch, kind
):
    """The request's first transaction inserts the key's record just before COMMIT. A
    deadlock or a Galera certification failure after that INSERT rolls the transaction
    back and ``payflow.platform.db.atomic`` runs it again: the claim must be inserted
    again, not fenced as if it existed (reproduced: 409 request_in_progress and nothing
    committed)."""
    from django.db import OperationalError

    from outbox import receivers

    token = api.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    paid = api.post(
        "/v1/payments", {"amount": 5_000, "currency": "EUR", "token": token, "cvc": "123"},
        format="json",
    ).json()  # fmt: skip
    insert = receivers._insert_events
    conflicts = []

    def conflict_once(staged):
        if not conflicts:
            conflicts.append(len(staged))
            raise OperationalError(1213, "Deadlock found when trying to get lock")
        return insert(staged)

    monkeypatch.setattr(receivers, "_insert_events", conflict_once)
    if kind == "token payment":
        body = {"amount": 1_000, "currency": "EUR", "token": token, "cvc": "123"}
        path = "/v1/payments"
    elif kind == "inline card payment":
        body = {"amount": 1_000, "currency": "EUR", "card": CARD}
        path = "/v1/payments"
    else:
        body, path = {"amount": 1_000}, f"/v1/payments/{paid['id']}/refunds"
    response = api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"conflict-{kind}")
    assert conflicts, "the conflict was injected"
    assert response.status_code == 201, response.content
    record = IdempotencyRecord.objects.get(key=f"conflict-{kind}")
    assert record.state == IdempotencyRecord.COMPLETED
    assert record.object_id is not None
    again = api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"conflict-{kind}")
    assert again.status_code == 201
    assert again.json() == response.json()
