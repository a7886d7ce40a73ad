"""With ``DEBUG=True`` (what ``make run`` sets), Django's own log lines are masked and
written once.

Reproduced before: Django's console handler (active only with DEBUG) had no PAN filter,
so ``GET /v1/payments/4111111111111111`` wrote ``Not Found: /v1/payments/4111111111111111``
to stderr unmasked, next to the root handler's masked copy: every 4xx twice. The 404's
message also repeated the id (``No such payment: '4111111111111111'``).
"""

from __future__ import annotations

import io
import logging
from contextlib import ExitStack

import pytest
from rest_framework.test import APIClient

from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from tests.payflow.api.conftest import assert_error

PAN = "4111111111111111"


def stream_handlers(name: str) -> list[logging.StreamHandler]:
    """Every stream handler a record of logger ``name`` reaches (the hierarchy up to the
    root, while loggers propagate): pytest's own capture handlers aside."""
    found, logger = [], logging.getLogger(name)
    while logger:
        found += [
            handler
            for handler in logger.handlers
            if type(handler) is logging.StreamHandler  # not pytest's LogCaptureHandler
        ]
        logger = logger.parent if logger.propagate else None
    return found


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
def test_django_s_own_lines_are_masked_and_written_once(db, settings, debug):
    # Outside tests/payflow/api: its autouse fixture takes the PAN filter off the handlers.
    api = APIClient()
    secret = api_key_create(merchant=merchant_create(name="debug-logs")).secret
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    settings.DEBUG = debug
    written = io.StringIO()
    with ExitStack() as restore:
        for handler in stream_handlers("django.request"):
            previous = handler.setStream(written)
            restore.callback(handler.setStream, previous)
        response = api.get(f"/v1/payments/{PAN}")
    error = assert_error(response, 404, "resource_missing", "id")
    assert PAN not in error["message"]
    assert PAN.encode() not in response.content
    text = written.getvalue()
    assert PAN not in text
    lines = [line for line in text.splitlines() if "Not Found: /v1/payments/" in line]
    assert len(lines) == 1, text
    assert lines[0].endswith("/v1/payments/************1111")
