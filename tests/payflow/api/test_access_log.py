"""Through a real gunicorn with its access log on: HTTP Basic auth with the key as user
name works, and no credential reaches the access log.

Reproduced before: ``curl -u sk_test_…:`` was refused (401) and gunicorn's default access
log format (``%(u)s``, the Basic-auth user name) wrote the full secret key on the line.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request

import pytest

from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from tests.infra.gunicorn import Gunicorn, gunicorn_env


@pytest.fixture(scope="module")
def web(infra_dir, django_db_setup, kafka_broker):
    server = Gunicorn(infra_dir / "gunicorn-access-log", gunicorn_env(kafka_broker.bootstrap))
    server.start()
    yield server
    server.stop()


def get(web: Gunicorn, path: str, authorization: str) -> int:
    request = urllib.request.Request(web.url + path, headers={"Authorization": authorization})  # noqa: S310 - http://127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def wait_for_lines(web: Gunicorn, lines: list[str], deadline_seconds: float = 10) -> str:
    deadline = time.monotonic() + deadline_seconds
    while True:
        log = web.log_path.read_text(errors="replace")
        missing = [line for line in lines if line not in log]
        if not missing:
            return log
        if time.monotonic() > deadline:
            pytest.fail(f"access log lines never written: {missing}\n{log[-2000:]}")
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_basic_auth_through_gunicorn_works_and_leaves_no_credential_in_the_access_log(web):
    secret = api_key_create(merchant=merchant_create(name="access-log")).secret
    basic = base64.b64encode(f"{secret}:".encode()).decode()
    # told apart by path (an unknown query parameter is a 400 since endpoints refuse them)
    assert get(web, "/v1/ping", f"Basic {basic}") == 200
    assert get(web, "/v1/balance", f"Bearer {secret}") == 200
    wrong = base64.b64encode(f"{secret[:-2]}xx:".encode()).decode()
    assert get(web, "/v1/ping?probe=wrong", f"Basic {wrong}") == 401
    # the access log is on and has the three requests (written once each response went) ...
    log = wait_for_lines(
        web,
        [
            f'"GET {path} HTTP/1.1" {status}'
            for path, status in (
                ("/v1/ping", 200),
                ("/v1/balance", 200),
                ("/v1/ping?probe=wrong", 401),
            )
        ],
    )
    # ... and no key, whole or in part, plain or base64
    for credential in (secret, secret[8:], basic, wrong, secret[:-2]):
        assert credential not in log
