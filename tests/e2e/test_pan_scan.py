"""The PAN scan: a scripted merchant session against the real stack, then every sink read.

gunicorn (its access log on) on the test MariaDB database, the session's real Celery
worker relaying the outbox to the Kafka-protocol broker. The session pays with cards and
their CVCs, moves money every way, tries a card number in every free-text field, header,
query and path, and walks the error paths (unknown ids, bad keys, Basic auth, declines,
invalid cards). Then no full card number the session typed, in digits, spaced or dashed,
no other Luhn-valid 13-19 digit run either, and no CVC next to a ``cvc`` key is in any
table, the web log (access log included), the
worker's log, any Kafka message (value, key, headers) or any response body.

Celery beat runs too, for the length of the session, and its log is scanned with the
others.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from outbox.events import ALL_TOPICS, full_topic
from outbox.models import EventStatus, OutboxEvent
from tests.infra.gunicorn import Gunicorn, gunicorn_env
from tests.infra.processes import LoggedProcess
from tests.pan_scan import (
    card_numbers_in_text,
    find_card_numbers_in_database,
    find_pans_in_database,
    find_pans_in_text,
)

APPROVED = "378282246310005"  # American Express, 4-digit CVC
APPROVED_CVC = "8317"
VISA = "4242424242424242"
VISA_CVC = "731"
DECLINED = "4000000000000002"
TYPED = ["4111111111111111", "5555555555554444", "6011111111111117", "4222222222222"]
PANS = [APPROVED, VISA, DECLINED, *TYPED]
CVC_NEAR_KEY = re.compile(rf"cvc\W{{0,6}}({APPROVED_CVC}|{VISA_CVC})\b", re.IGNORECASE)

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def web(infra_dir, django_db_setup, kafka_broker, celery_worker_process):
    server = Gunicorn(infra_dir / "gunicorn-pan-scan", gunicorn_env(kafka_broker.bootstrap))
    server.start()
    yield server
    server.stop()


class Beat(LoggedProcess):
    """``celery beat`` on the worker's broker, its schedule file in its work directory."""

    log_name = "beat.log"

    def start(self, env: dict[str, str]) -> Beat:
        log = self.open_log()
        self.process = subprocess.Popen(
            # DEBUG: every line beat can write is scanned, its schedule listing included
            # (at INFO they are left out: payflow.celery.QuietFrequentTasks).
            [sys.executable, "-m", "celery", "-A", "payflow", "beat", "--loglevel", "DEBUG",
             "--schedule", str(self.workdir / "schedule")],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        return self


@pytest.fixture
def beat(infra_dir, kafka_broker, celery_worker_process):
    process = Beat(infra_dir / "beat-pan-scan").start(gunicorn_env(kafka_broker.bootstrap))
    yield process
    process.stop()


class Session:
    """Every request and response of the scripted session."""

    def __init__(self, web: Gunicorn, secret: str) -> None:
        self.web, self.secret = web, secret
        self.bodies: list[bytes] = []
        self.sent: list[str] = []  # the positive control: what the scan must find here

    def call(self, method, path, body=None, *, auth=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
            self.web.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": auth if auth is not None else f"Bearer {self.secret}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, content = response.status, response.read()
        except urllib.error.HTTPError as refused:
            status, content = refused.code, refused.read()
        self.bodies.append(content)
        self.sent.append(f"{method} {path} {data or b''!r} {headers or {}} {auth or ''}")
        return status, json.loads(content) if content.startswith(b"{") else None


def card(number, cvc=None):
    return {"number": number, "exp_month": 12, "exp_year": 2034, **({"cvc": cvc} if cvc else {})}


def run_session(s: Session) -> None:
    ok = {200, 201}
    # money, every way it moves
    status, paid = s.call(
        "POST",
        "/v1/payments",
        {"amount": 9_000, "currency": "EUR", "card": card(APPROVED, APPROVED_CVC)},
    )
    assert status in ok, paid
    status, token = s.call("POST", "/v1/tokens", {"card": card(VISA)})
    assert status in ok, token
    status, held = s.call(
        "POST",
        "/v1/payments",
        {
            "amount": 4_000,
            "currency": "EUR",
            "token": token["id"],
            "cvc": VISA_CVC,
            "capture": False,
        },
    )
    assert status in ok, held
    assert s.call("POST", f"/v1/payments/{held['id']}/capture", {"amount": 3_000})[0] in ok
    assert s.call("POST", f"/v1/payments/{paid['id']}/refunds", {"amount": 500})[0] in ok
    status, other = s.call(
        "POST",
        "/v1/payments",
        {"amount": 1_000, "currency": "EUR", "token": token["id"], "capture": False},
    )
    assert s.call("POST", f"/v1/payments/{other['id']}/cancel", {})[0] in ok
    assert (
        s.call(
            "POST",
            "/v1/payments",
            {"amount": 900, "currency": "EUR", "card": card(DECLINED, "123")},
        )[0]
        == 402
    )
    # a card number typed everywhere it does not belong
    for pan in TYPED:
        spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
        for body in (
            {"amount": 100, "currency": "EUR", "card": card(VISA), "metadata": {"n": pan}},
            {"amount": 100, "currency": "EUR", "card": card(VISA), "metadata": {spaced: "x"}},
            {"amount": 100, "currency": "EUR", "card": card(VISA), "external_reference": pan},
            {"amount": 100, "currency": "EUR", "card": card(VISA), pan: "unknown field"},
            {"amount": 100, "currency": "EUR", "card": {**card(VISA), "name": spaced}},
        ):
            assert s.call("POST", "/v1/payments", body)[0] == 400
        # a card number as the token: not a token id (404, not repeated)
        assert (
            s.call("POST", "/v1/payments", {"amount": 100, "currency": "EUR", "token": pan})[0]
            == 404
        )
        assert (
            s.call(
                "POST",
                "/v1/payments",
                {"amount": 100, "currency": "EUR", "card": card(VISA)},
                headers={"Idempotency-Key": pan},
            )[0]
            == 400
        )
        assert (
            s.call(
                "POST",
                f"/v1/payments/{paid['id']}/refunds",
                {"amount": 1, "reason": f"card {spaced}"},
            )[0]
            == 400
        )
        assert (
            s.call(
                "POST",
                "/v1/payouts",
                {"amount": 1, "currency": "EUR", "external_reference": spaced},
            )[0]
            == 400
        )
        for path in (
            f"/v1/payments/{pan}",
            f"/v1/refunds/{pan}",
            f"/v1/tokens/{pan}",
            f"/v1/payouts/{pan}",
            f"/v1/payments/{pan}/capture",
            f"/v1/payments?external_reference={pan}",
            f"/v1/{pan}",
        ):
            method = "POST" if path.endswith("capture") else "GET"
            assert s.call(method, path, {} if method == "POST" else None)[0] in (400, 404)
        # credentials that are card numbers
        assert s.call("GET", "/v1/balance", auth=f"Bearer {pan}")[0] == 401
        basic = base64.b64encode(f"{pan}:".encode()).decode()
        assert s.call("GET", "/v1/balance", auth=f"Basic {basic}")[0] == 401
        # a card number that is not a valid card, and a malformed body holding one
        assert s.call("POST", "/v1/tokens", {"card": card(pan[:-1] + "0")})[0] == 400
        truncated = f'{{"card": {{"number": "{pan}"'.encode()
        assert s.call("POST", "/v1/payments", raw=truncated)[0] == 400
    assert s.call("GET", "/v1/events")[0] == 200


def wait_published(deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while OutboxEvent.objects.filter(status=EventStatus.PENDING).exists():
        if time.monotonic() > deadline:
            pending = OutboxEvent.objects.filter(status=EventStatus.PENDING).count()
            pytest.fail(f"{pending} outbox events never reached Kafka")
        time.sleep(0.2)


def wait_for_beat(beat: Beat, deadline_seconds: float = 30) -> None:
    deadline = time.monotonic() + deadline_seconds
    # No job is due within seconds since the relay left beat (the shortest runs every
    # minute): beat has run once it listed its schedule.
    while "ScheduleEntry: recover-in-flight" not in beat.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail(f"beat did not start within {deadline_seconds}s:\n{beat.log_tail()}")
        time.sleep(0.2)


def test_no_card_number_or_cvc_in_any_table_log_message_or_response(
    web, kafka_broker, celery_worker_process, relay_process, beat
):
    merchant = merchant_create(name="pan-scan")
    session = Session(web, api_key_create(merchant=merchant).secret)
    run_session(session)
    wait_published()
    wait_for_beat(beat)
    beat.stop()
    messages = kafka_broker.consume([full_topic(topic) for topic in ALL_TOPICS], timeout=5)
    assert messages, "nothing reached Kafka"
    kafka_text = "\n".join(
        (message.value() or b"").decode("utf-8", "replace")
        + (message.key() or b"").decode("utf-8", "replace")
        + repr(message.headers() or [])
        for message in messages
    )
    sinks = {
        "web log": web.log_path.read_text(errors="replace"),
        "worker log": celery_worker_process.log_path.read_text(errors="replace"),
        "relay log": relay_process.log_path.read_text(errors="replace"),
        "beat log": beat.log_path.read_text(errors="replace"),
        "kafka": kafka_text,
        "responses": b"\n".join(session.bodies).decode("utf-8", "replace"),
    }
    assert '"GET /v1/balance HTTP/1.1" 401' in sinks["web log"]  # the access log is on
    assert "beat: Starting..." in sinks["beat log"]  # beat ran
    # the scan sees every card number the session typed, in what it sent
    sent = {last4 for last4, _form in find_pans_in_text("\n".join(session.sent), PANS)}
    assert sent == {pan[-4:] for pan in PANS}
    for name, text in sinks.items():
        assert find_pans_in_text(text, PANS) == [], name
        assert card_numbers_in_text(text) == [], name  # any card number, not only ours
        assert not CVC_NEAR_KEY.search(text), name
    assert find_pans_in_database(PANS) == []
    assert find_card_numbers_in_database() == []
