"""Side-by-side timings behind docs/libraries.md: each hand-written piece of issue #20 and
its candidate libraries, in one process so that they share the machine's state.

The candidates that are not dependencies go to a scratch directory, not into .venv:

    .venv/bin/pip install --no-deps --target /tmp/libeval/site python-json-logger==4.2.0 \
        django-guid==3.6.1 uuid6==2025.0.1 python-stdnum==2.2 luhn==0.2.0 rfc8785==0.1.4 \
        jcs==0.2.1
    DJANGO_SETTINGS_MODULE=tests.settings PYTHONPATH=.:/tmp/libeval/site \
        .venv/bin/python bench/libraries.py
"""

import datetime
import json
import logging
import os
import random
import re
import threading
import time
import timeit
import uuid

import django

django.setup()

import iso4217  # noqa: E402
import jcs  # noqa: E402
import luhn  # noqa: E402
import rfc8785  # noqa: E402
import uuid6  # noqa: E402
import uuid_utils.compat  # noqa: E402
from django_guid import utils as guid_utils  # noqa: E402
from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter  # noqa: E402
from stdnum import luhn as stdnum_luhn  # noqa: E402

from ledger.currencies import EXPONENTS  # noqa: E402
from payflow.logging import JsonFormatter, LogContextFilter, redact_pans  # noqa: E402
from payflow.platform import context, db, trail  # noqa: E402
from payflow.platform.cardnumbers import luhn_valid  # noqa: E402

NUMBER = 1_000_000

# The hand-written generator as it was (payflow/platform/db.py before issue #20).
_uuid7_lock = threading.Lock()
_uuid7_last_ms = 0
_uuid7_counter = 0


def handwritten_uuid7() -> uuid.UUID:
    """A time-ordered UUID version 7, monotonic within this process.

    48 bits of Unix milliseconds, then a 12-bit counter (RFC 9562 method 1: seeded randomly
    each millisecond and incremented for ids made in the same millisecond), then 62 random
    bits. If the counter overflows, the timestamp is advanced by one millisecond.
    """
    global _uuid7_last_ms, _uuid7_counter
    with _uuid7_lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _uuid7_last_ms:
            _uuid7_last_ms = now_ms
            _uuid7_counter = random.getrandbits(11)  # leave headroom for increments
        else:
            _uuid7_counter += 1
            if _uuid7_counter > 0xFFF:
                _uuid7_last_ms += 1
                _uuid7_counter = 0
        timestamp_ms, counter = _uuid7_last_ms, _uuid7_counter
    tail = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (timestamp_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= tail
    return uuid.UUID(int=value)


def best(stmt, number):
    """Best of 9 repeats, in nanoseconds per call."""
    return min(timeit.repeat(stmt, number=number, repeat=9)) / number * 1e9


def show(title, candidates, number):
    print(f"\n## {title} (best of 9 x {number:,} calls, ns/call)")
    for name, stmt in candidates:
        print(f"  {name:45s} {best(stmt, number):10.0f}")


# --- UUIDv7 ---------------------------------------------------------------------------
show(
    "UUIDv7 generation",
    [
        ("hand-written uuid7 (before issue #20)", handwritten_uuid7),
        ("payflow.platform.db.uuid7 (now: uuid_utils)", db.uuid7),
        ("uuid_utils.compat.uuid7 1.2.0", uuid_utils.compat.uuid7),
        ("uuid6.uuid7 2025.0.1", uuid6.uuid7),
        ("(reference) uuid.uuid4", uuid.uuid4),
    ],
    200_000,
)

# --- JSON log formatting --------------------------------------------------------------
record = logging.LogRecord(
    "ledger.services.payments", logging.INFO, __file__, 1, "payment %s captured", ("pay_1",), None
)
with context.replaced(
    context.AuditContext(
        actor_type="api_key",
        actor_id="k1",
        request_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        merchant_id="m1",
    )
):
    LogContextFilter().filter(record)
ours = JsonFormatter()
library = LibraryJsonFormatter(
    "%(levelname)s %(name)s %(message)s %(process)d",
    rename_fields={"levelname": "level", "name": "logger"},
    timestamp="time",
    json_ensure_ascii=False,
)


class RedactingLibraryJsonFormatter(LibraryJsonFormatter):
    def jsonify_log_record(self, log_data):
        return redact_pans(super().jsonify_log_record(log_data))


library_redacting = RedactingLibraryJsonFormatter(
    "%(levelname)s %(name)s %(message)s %(process)d",
    rename_fields={"levelname": "level", "name": "logger"},
    timestamp="time",
    json_ensure_ascii=False,
)
print("\nours:   ", ours.format(record))
print("library:", library.format(record))
show(
    "JSON log formatting of one record",
    [
        ("payflow.logging.JsonFormatter (hand-written)", lambda: ours.format(record)),
        ("pythonjsonlogger.json.JsonFormatter 4.2.0", lambda: library.format(record)),
        ("  the same + redact_pans(line), as ours does", lambda: library_redacting.format(record)),
    ],
    100_000,
)

# --- request ids ----------------------------------------------------------------------
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
show(
    "request id: accept a supplied id / make one",
    [
        ("payflow: fullmatch a supplied id", lambda: _REQUEST_ID.fullmatch("req-12345678")),
        (
            "django_guid 3.6.1: validate_guid (uuid4 only)",
            lambda: guid_utils.validate_guid("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        ),
        ("payflow: context.new_request_id", context.new_request_id),
        ("django_guid 3.6.1: uuid.uuid4().hex (generate_guid)", lambda: uuid.uuid4().hex),
    ],
    200_000,
)

# --- ISO 4217 -------------------------------------------------------------------------
show(
    "currency exponent lookup",
    [
        ("payflow EXPONENTS dict", lambda: EXPONENTS["EUR"]),
        ("iso4217.Currency(code).exponent 1.16", lambda: iso4217.Currency("EUR").exponent),
    ],
    NUMBER,
)

# --- Luhn -----------------------------------------------------------------------------
pan = "4242424242424242"
show(
    "Luhn check of a 16-digit number",
    [
        ("payflow.platform.cardnumbers.luhn_valid", lambda: luhn_valid(pan)),
        ("stdnum.luhn.is_valid 2.2", lambda: stdnum_luhn.is_valid(pan)),
        ("luhn.verify 0.2.0", lambda: luhn.verify(pan)),
    ],
    200_000,
)

# --- canonical JSON -------------------------------------------------------------------
fields = {
    "action": "update",
    "actor": {"id": "k1", "label": "Checkout key – Zürich", "type": "api_key"},
    "created_at": datetime.datetime(2026, 11, 21, 19, 41, 24, 180214, tzinfo=datetime.UTC),
    "event_type": "payment.captured",
    "ip": "192.0.2.7",
    "new": {
        "status": "captured",
        "captured_amount": 1050,
        "currency": "EUR",
        "metadata": {"order": "A-17", "note": "ß→✓ 🎉", "tags": ["a", "b"]},
    },
    "object_id": "0190f5a2-7c1e-7b3a-9d2e-5f4a3b2c1d0e",
    "object_type": "ledger.transaction",
    "old": {"status": "authorized", "captured_amount": 0, "refunded": False, "x": None},
    "reason": "",
    "request_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "task_id": "",
    "user_agent": "Mozilla/5.0",
}


def canonical_body(fields):
    """The entry's members as ``payflow.platform.trail.encode_body`` encodes them (integers
    as strings, the time formatted, ``v`` added), before any JSON encoding."""
    return {
        **{name: fields[name] for name in fields if name not in {"actor", "new", "old"}},
        "actor": {key: str(value) for key, value in fields["actor"].items()},
        "created_at": trail.format_time(fields["created_at"]),
        "new": trail.canonical_values(fields["new"]),
        "old": trail.canonical_values(fields["old"]),
        "v": str(trail.ENCODING_VERSION),
    }


def utf16_ordered(value):
    """RFC 8785 section 3.2.3 key order (UTF-16 code units) for str/bool/null/dict/list."""
    if type(value) is dict:
        return {
            key: utf16_ordered(value[key])
            for key in sorted(value, key=lambda key: key.encode("utf-16-be"))
        }
    if type(value) is list:
        return [utf16_ordered(item) for item in value]
    return value


def stdlib_jcs(fields):
    body = canonical_body(fields)
    return json.dumps(utf16_ordered(body), separators=(",", ":"), ensure_ascii=False).encode()


body = canonical_body(fields)
print("\nrfc8785 bytes == v2 bytes:", rfc8785.dumps(body) == trail.encode_body(fields))
print("jcs bytes == v2 bytes:    ", jcs.canonicalize(body) == trail.encode_body(fields))
print("stdlib + UTF-16 key order == rfc8785:", stdlib_jcs(fields) == rfc8785.dumps(body))
show(
    "canonical encoding of one audit entry",
    [
        ("payflow.platform.trail.encode_body (v2, json.dumps)", lambda: trail.encode_body(fields)),
        ("v2 values + rfc8785.dumps 0.1.4", lambda: rfc8785.dumps(canonical_body(fields))),
        ("v2 values + jcs.canonicalize 0.2.1", lambda: jcs.canonicalize(canonical_body(fields))),
        ("v2 values + stdlib json, UTF-16 key order", lambda: stdlib_jcs(fields)),
    ],
    20_000,
)


# --- behaviour, not speed -------------------------------------------------------------
def clock_drift_ms(make):
    """How far ahead of the clock the last of a burst of 20,000 ids is."""
    values = [make() for _ in range(20_000)]
    assert values == sorted(values)
    return (values[-1].int >> 80) - time.time_ns() // 1_000_000


print("\n## UUIDv7 clock drift after a burst of 20,000 ids (ms ahead of the clock)")
for name, make in (
    ("hand-written uuid7", handwritten_uuid7),
    ("uuid_utils.compat.uuid7", uuid_utils.compat.uuid7),
    ("uuid6.uuid7", uuid6.uuid7),
):
    print(f"  {name:45s} {clock_drift_ms(make):10d}")


def v2_style(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc8785_agreement(examples=20_000):
    """Random v2-shaped bodies (str, bool, null, dict, list: v2 writes every number as a
    string): how often RFC 8785 bytes differ from v2's, before and after ordering keys by
    UTF-16 code units (RFC 8785 section 3.2.3) instead of code points."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
    values = st.recursive(
        st.none() | st.booleans() | text,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=20,
    )
    counts = {"examples": 0, "differ": 0, "differ_after_utf16_key_order": 0}

    @settings(
        max_examples=examples,
        suppress_health_check=list(HealthCheck),
        deadline=None,
        database=None,
    )
    @given(st.dictionaries(text, values, max_size=6))
    def check(body):
        counts["examples"] += 1
        reference = rfc8785.dumps(body)
        counts["differ"] += reference != v2_style(body)
        reordered = json.dumps(utf16_ordered(body), separators=(",", ":"), ensure_ascii=False)
        counts["differ_after_utf16_key_order"] += reference != reordered.encode()

    check()
    return counts


print("\n## RFC 8785 (rfc8785 0.1.4) against v2's json.dumps on random v2-shaped bodies")
print(" ", rfc8785_agreement())
