"""The ``PayFlow-Signature`` header: Stripe's scheme, so existing helpers verify it.

``PayFlow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``;
while a rolled secret's grace period lasts, a second ``v1=`` is made with the previous
secret. A receiver recomputes the HMAC over the exact bytes it received with its secret,
compares in constant time against any ``v1`` and refuses a ``t`` older than its tolerance
(``verify`` below, 300 s by default), which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

HEADER = "PayFlow-Signature"
DEFAULT_TOLERANCE = 300


class SignatureInvalid(Exception):
    pass


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header(body: bytes, secrets: Iterable[str], *, timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={stamp}", *(f"v1={_mac(secret, stamp, body)}" for secret in secrets)])


def verify(
    body: bytes, value: str, secret: str, *, tolerance: int = DEFAULT_TOLERANCE, now=None
) -> int:
    """The timestamp of a valid signature; ``SignatureInvalid`` otherwise."""
    parts = [part.split("=", 1) for part in value.split(",") if "=" in part]
    stamps = [item for key, item in parts if key == "t"]
    candidates = [item for key, item in parts if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit() or not candidates:
        raise SignatureInvalid("malformed signature header")
    stamp = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise SignatureInvalid("timestamp outside the tolerance")
    expected = _mac(secret, stamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureInvalid("no signature matches")
    return stamp
