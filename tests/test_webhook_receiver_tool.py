"""``tools/webhook_receiver.py``, the README's receiver, as a developer runs it: a real
process on loopback that accepts what PayFlow signs and refuses a forgery, a replay and a
wrong secret."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from payflow.webhooks import signing
from payflow.webhooks.secrets import new_secret

TOOL = Path(__file__).resolve().parents[1] / "tools" / "webhook_receiver.py"
EVENT = {
    "id": "evt_" + "1" * 32,
    "type": "payment.captured",
    "data": {"object": {"id": "pay_" + "2" * 32, "status": "captured", "version": 3}},
}


@pytest.fixture
def receiver():
    secret = new_secret()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(TOOL), "--secret", secret, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout.readline().startswith("listening on")
    yield f"http://127.0.0.1:{port}/hooks", secret, process
    process.terminate()
    process.wait(10)


def post(url: str, body: bytes, header: str) -> int:
    headers = {"PayFlow-Signature": header}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_the_receiver_accepts_what_payflow_signs_and_refuses_the_rest(receiver):
    url, secret, process = receiver
    body = json.dumps(EVENT).encode()
    assert post(url, body, signing.header(body, [secret])) == 204
    assert process.stdout.readline().split() == [
        "verified", EVENT["id"], "payment.captured", "pay_" + "2" * 32, "status=captured",
        "version=3",
    ]  # fmt: skip
    # a rolled secret's two signatures: either one will do
    assert post(url, body, signing.header(body, [new_secret(), secret])) == 204
    process.stdout.readline()
    refusals = {
        "a changed body": (body.replace(b"captured", b"refunded"), signing.header(body, [secret])),
        "another secret": (body, signing.header(body, [new_secret()])),
        "a replay": (body, signing.header(body, [secret], timestamp=int(time.time()) - 3600)),
        "no signature": (body, "t=1"),
    }
    for what, (sent, header) in refusals.items():
        assert post(url, sent, header) == 400, what
        assert process.stdout.readline().startswith("refused:"), what
