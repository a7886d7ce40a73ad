"""API keys: issue (the secret is returned once), authenticate, revoke."""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ledger.events import EventType
from ledger.exceptions import InvalidRequest
from ledger.models import ApiKey, ApiKeyMode, Merchant
from ledger.services.transitions import row_compare_and_set
from ledger.signals import insert_audited
from payflow.platform import caches, db
from payflow.platform.guards import sanctioned_writes

PREFIX_LENGTH = 12
#: How stale ``last_used_at`` may get before a request refreshes it (one write a minute,
#: not one per request).
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)

#: Keys (with their merchant) by secret hash, for ``API_CACHE_SECONDS``: a request with a
#: known key reads nothing. A revocation or suspension made in this process takes effect at
#: its commit (``ledger_changed`` forgets the rows), one made elsewhere within the TTL.
_KEYS = caches.ProcessCache(
    "api_keys", ttl=lambda: settings.API_CACHE_SECONDS, labels=("ledger.apikey", "ledger.merchant")
)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once; never stored

    def __repr__(self) -> str:
        return f"IssuedKey({self.api_key})"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@db.atomic
def api_key_create(*, merchant: Merchant, name: str = "", mode: str = ApiKeyMode.TEST) -> IssuedKey:
    """Issue a key. One transaction; signals ``api_key.created``. The secret is returned
    here and nowhere else: only its hash is stored."""
    if mode not in ApiKeyMode.values:
        raise InvalidRequest("mode must be test or live", param="mode")
    random_part = secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    secret = f"sk_{mode}_{random_part}"
    api_key = insert_audited(
        ApiKey(
            merchant=merchant,
            name=name[:100],
            mode=mode,
            prefix=random_part[:PREFIX_LENGTH],
            secret_hash=_hash(secret),
        ),
        event_type=EventType.API_KEY_CREATED,
    )
    return IssuedKey(api_key=api_key, secret=secret)


def api_key_authenticate(secret: str) -> ApiKey | None:
    """The active key for ``secret`` (its merchant loaded), or None (malformed, unknown or
    revoked). Read-only; a key seen in the last ``API_CACHE_SECONDS`` is not read again
    (a copy of the cached rows is returned: callers may change it)."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != "sk" or parts[1] not in ApiKeyMode.values:
        return None
    if len(parts[2]) < PREFIX_LENGTH:
        return None
    digest = _hash(secret)
    candidate = _KEYS.get(digest)
    if candidate is None:
        since = caches.epoch()
        candidate = (
            ApiKey.objects.select_related("merchant")
            .filter(prefix=parts[2][:PREFIX_LENGTH])
            .first()
        )
        if candidate is None or not hmac.compare_digest(candidate.secret_hash, digest):
            return None
        tags = [caches.tag("ledger.apikey", candidate.pk)]
        tags.append(caches.tag("ledger.merchant", candidate.merchant_id))
        _KEYS.put_after_commit(digest, candidate, tags=tags, since=since)
    if candidate.mode != parts[1] or not candidate.is_active:
        return None
    found = copy.copy(candidate)
    found.merchant = copy.copy(candidate.merchant)
    return found


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once per ``LAST_USED_RESOLUTION``: nothing is written when the
    row just loaded is fresh (the common case: no write on the request path), otherwise a
    conditional UPDATE, so concurrent requests do not queue on the row. Telemetry: no
    signal, no audit row."""
    now = timezone.now()
    if api_key.last_used_at is not None and api_key.last_used_at >= now - LAST_USED_RESOLUTION:
        return
    _touch(api_key.pk, now)
    api_key.last_used_at = now
    cached = _KEYS.get(api_key.secret_hash)
    if cached is not None:
        cached.last_used_at = now


@db.atomic
def _touch(api_key_id, now) -> None:
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    with sanctioned_writes():
        ApiKey.objects.filter(stale, pk=api_key_id).update(last_used_at=now)


@db.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke: the key stops working at once. Compare-and-set; ``api_key.revoked``."""
    fresh = ApiKey.objects.get(pk=api_key.pk)
    if not fresh.is_active:
        return fresh
    return row_compare_and_set(
        fresh, event_type=EventType.API_KEY_REVOKED, revoked_at=timezone.now()
    )
