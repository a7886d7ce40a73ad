"""Webhook endpoints: the services behind ``/v1/webhook_endpoints`` and the admin.

Every change is one transaction (``payflow.platform.db.atomic``), a compare-and-set on
``version`` where it changes a row (``ConcurrentUpdate`` when someone else changed it).

Where a URL may point (``check_url``), checked when it is set and again before every
delivery (the name could resolve elsewhere by then):

- live mode: ``https`` only, and never to a private, loopback, link-local, multicast,
  reserved or unspecified address (what the URL's host resolves to, every address);
- test mode: ``http`` too, and those addresses only when
  ``WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST`` is on (``make run``'s defaults and the test
  suite), so a developer can point a webhook at a receiver on their machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from audit.actions import Action
from audit.services import audit_record
from ledger import vault
from ledger.events import MERCHANT_EVENT_TYPES
from ledger.exceptions import ConcurrentUpdate, InvalidRequest, NotFound
from ledger.models import Merchant
from payflow.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payflow.platform import context, db
from payflow.webhooks import secrets

MAX_ENDPOINTS = 16
MAX_GRACE = datetime.timedelta(days=7)
DEFAULT_GRACE = datetime.timedelta(hours=24)


class UrlRefused(InvalidRequest):
    """A URL PayFlow will not call; the message says why, never repeating the URL."""

    code = "url_not_allowed"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="url")


def _refused_address(address: str) -> bool:
    """Anything but a public unicast address: private, loopback, link-local, shared
    (100.64/10), reserved, multicast, unspecified, IPv6 site-local (fec0::/10, deprecated
    but routable inside some networks), and IPv6 forms that carry such an IPv4 address
    (mapped, 6to4, Teredo)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        candidates += [found for found in embedded if found is not None]
    return any(
        not found.is_global
        or found.is_multicast
        or (isinstance(found, ipaddress.IPv6Address) and found.is_site_local)
        for found in candidates
    )


def resolve(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UrlRefused("The URL's host does not resolve.") from exc
    return sorted({str(info[4][0]) for info in found})


@dataclass(frozen=True)
class Destination:
    """Where a delivery connects: the URL's host (for TLS and ``Host``), and the one
    address that was checked (the connection goes there, never to a second lookup)."""

    host: str
    port: int
    path: str
    tls: bool
    address: str


def _parsed(url: Any, *, livemode: bool) -> urllib.parse.SplitResult:
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise UrlRefused("url must be an absolute http(s) URL of at most 2048 characters.")
    if not url.isascii() or any(char.isspace() or ord(char) < 32 for char in url):
        raise UrlRefused("url must be ASCII without spaces (punycode and percent-encoding).")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise UrlRefused("url is not a valid URL.") from exc
    allowed = ("https",) if livemode else ("https", "http")
    if parts.scheme not in allowed:
        raise UrlRefused(
            "url must use https in live mode." if livemode else "url must use http or https."
        )
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise UrlRefused("url must name a host, without a user name or password.")
    return parts


def destination(url: Any, *, livemode: bool) -> Destination:
    """Where PayFlow may deliver ``url`` now, in this mode; ``UrlRefused`` otherwise.
    Resolves the host: every address it has must be allowed."""
    parts = _parsed(url, livemode=livemode)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    addresses = resolve(host, port)
    private_ok = not livemode and settings.WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST
    if not private_ok and any(_refused_address(address) for address in addresses):
        raise UrlRefused(
            "url resolves to a private, loopback or link-local address, which PayFlow"
            " does not call" + (" in live mode." if livemode else " (see the docs).")
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Destination(host, port, path, tls, addresses[0])


def check_url(url: Any, *, livemode: bool) -> str:
    """``url`` if PayFlow may deliver to it in this mode; ``UrlRefused`` otherwise."""
    destination(url, livemode=livemode)
    return str(url)


def _matches(pattern: str, event_type: str) -> bool:
    """``*``, an event type, or a prefix ending in ``*`` (``payment.*``)."""
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def check_events(value: Any) -> list[str]:
    """Event types, ``payment.*``-style prefixes, or ``["*"]`` (every type)."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) for item in value)
        or len(value) > len(MERCHANT_EVENT_TYPES) + 1
    ):
        raise InvalidRequest(
            'enabled_events must be a non-empty list of event types, or ["*"].',
            param="enabled_events",
        )
    unknown = [
        item
        for item in value
        if not any(_matches(item, name) for name in MERCHANT_EVENT_TYPES)
        or ("*" in item and not item.endswith("*"))
    ]
    if unknown:
        raise InvalidRequest(
            "enabled_events holds a name that is not an event type or a prefix ending in *"
            " (docs/events.md lists them).",
            param="enabled_events",
        )
    return ["*"] if "*" in value else sorted(set(value))


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return any(_matches(pattern, event_type) for pattern in endpoint.enabled_events)


AUDITED = ("merchant", "livemode", "url", "enabled_events", "description", "status", "deleted")


def _audited(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What an audit entry shows of an endpoint: never a secret."""
    values = {name: getattr(endpoint, name) for name in AUDITED if name != "merchant"}
    values["merchant"] = str(endpoint.merchant_id)
    values["version"] = endpoint.version
    if endpoint.disabled_reason:
        values["disabled_reason"] = endpoint.disabled_reason
    return values


def _audit(
    endpoint: WebhookEndpoint, event: str, old: dict[str, Any] | None, new: dict[str, Any]
) -> None:
    audit_record(
        object_type="payflow.webhookendpoint",
        object_id=str(endpoint.pk),
        action=Action.INSERT if old is None else Action.UPDATE,
        event_type=f"webhook_endpoint.{event}",
        old_values=old,
        new_values=new,
    )


@dataclass(frozen=True)
class WithSecret:
    endpoint: WebhookEndpoint
    secret: str = field(repr=False)  # never in a log line or a traceback


def webhook_endpoint_create(
    *,
    merchant: Merchant,
    livemode: bool,
    url: Any,
    enabled_events: Any,
    description: str = "",
) -> WithSecret:
    """A new enabled endpoint and its signing secret (shown to the caller once). The URL
    is checked (a DNS lookup) before the transaction, never inside it."""
    url = check_url(url, livemode=livemode)
    return _endpoint_insert(merchant, livemode, url, check_events(enabled_events), description)


@db.atomic
def _endpoint_insert(
    merchant: Merchant, livemode: bool, url: str, events: list[str], description: str
) -> WithSecret:
    count = WebhookEndpoint.objects.filter(
        merchant=merchant, livemode=livemode, deleted=False
    ).count()
    if count >= MAX_ENDPOINTS:
        raise InvalidRequest(f"At most {MAX_ENDPOINTS} webhook endpoints per mode.")
    endpoint = WebhookEndpoint(
        merchant=merchant,
        livemode=livemode,
        url=url,
        enabled_events=events,
        description=description,
    )
    secret = secrets.new_secret()
    endpoint.secret_sealed = secrets.seal(endpoint.pk, secret)
    endpoint.save(force_insert=True)
    _audit(endpoint, "created", None, _audited(endpoint))
    return WithSecret(endpoint, secret)


def _compare_and_set(
    endpoint: WebhookEndpoint,
    event: str = "updated",
    audited: dict[str, Any] | None = None,
    **changes: Any,
) -> WebhookEndpoint:
    """One compare-and-set of the endpoint and its audit entry, in the caller's transaction."""
    before = _audited(endpoint)
    changes["updated_at"] = timezone.now()
    updated = WebhookEndpoint.objects.filter(pk=endpoint.pk, version=endpoint.version).update(
        version=F("version") + 1, **changes
    )
    if not updated:
        current = (
            WebhookEndpoint.objects.filter(pk=endpoint.pk).values_list("version", flat=True).first()
        )
        raise ConcurrentUpdate(
            f"webhook endpoint changed since it was read (now version {current})",
            current_version=current,
        )
    for name, value in changes.items():
        setattr(endpoint, name, value)
    endpoint.version += 1
    _audit(endpoint, event, before, audited if audited is not None else _audited(endpoint))
    return endpoint


def endpoint_of(merchant_id: Any, livemode: bool, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    found = WebhookEndpoint.objects.filter(
        pk=endpoint_id, merchant_id=merchant_id, livemode=livemode, deleted=False
    ).first()
    if found is None:
        raise NotFound("No such webhook endpoint.", param="id")
    return found


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    expected_version: int | None = None,
    **changes: Any,
) -> WebhookEndpoint:
    """Change ``url``, ``enabled_events``, ``description`` or ``disabled``. Re-enabling
    clears the reason an endpoint was disabled for, and what it is still owed is retried
    from now with a fresh retry span (the days it was disabled do not count)."""
    if "url" in changes:  # the DNS lookup before the transaction
        changes = {**changes, "url": check_url(changes["url"], livemode=endpoint.livemode)}
    return _endpoint_change(endpoint, expected_version, changes)


@db.atomic
def _endpoint_change(
    endpoint: WebhookEndpoint, expected_version: int | None, changes: dict[str, Any]
) -> WebhookEndpoint:
    if expected_version is not None and expected_version != endpoint.version:
        raise ConcurrentUpdate(
            f"webhook endpoint is at version {endpoint.version}, not {expected_version}",
            current_version=endpoint.version,
        )
    values: dict[str, Any] = {}
    if "url" in changes:
        values["url"] = changes["url"]
    if "enabled_events" in changes:
        values["enabled_events"] = check_events(changes["enabled_events"])
    if "description" in changes:
        values["description"] = changes["description"]
    if "disabled" in changes:
        values["status"] = (
            WebhookEndpoint.Status.DISABLED
            if changes["disabled"]
            else WebhookEndpoint.Status.ENABLED
        )
        values["disabled_reason"] = "disabled by the merchant" if changes["disabled"] else ""
    if not values:
        return endpoint
    enabling = (
        values.get("status") == WebhookEndpoint.Status.ENABLED
        and endpoint.status != WebhookEndpoint.Status.ENABLED
    )
    changed = _compare_and_set(endpoint, **values)
    if enabling:
        WebhookDelivery.objects.filter(
            endpoint=endpoint, status=WebhookDelivery.Status.PENDING
        ).update(first_attempt_at=None, next_attempt_at=timezone.now(), version=F("version") + 1)
    return changed


@db.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Deleted endpoints get nothing more; their deliveries stay on record."""
    return _compare_and_set(
        endpoint,
        deleted=True,
        status=WebhookEndpoint.Status.DISABLED,
        disabled_reason="deleted",
        previous_secret_sealed=None,
        previous_secret_expires_at=None,
    )


@db.atomic
def webhook_endpoint_roll_secret(
    *, endpoint: WebhookEndpoint, grace: datetime.timedelta = DEFAULT_GRACE
) -> WithSecret:
    """A new secret; the current one keeps signing (a second ``v1``) for ``grace``
    (0 to 7 days; 0 ends it at once)."""
    if not datetime.timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidRequest("expires_in must be from 0 to 604800 seconds.", param="expires_in")
    secret = secrets.new_secret()
    keep = grace > datetime.timedelta(0)
    endpoint = _compare_and_set(
        endpoint,
        "secret_rolled",
        {
            "version": endpoint.version + 1,
            "previous_secret_valid_seconds": int(grace.total_seconds()),
        },
        secret_sealed=secrets.seal(endpoint.pk, secret),
        previous_secret_sealed=bytes(endpoint.secret_sealed) if keep else None,
        previous_secret_expires_at=timezone.now() + grace if keep else None,
    )
    return WithSecret(endpoint, secret)


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime.datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one
    during its grace period."""
    found = [secrets.open_sealed(endpoint.pk, endpoint.secret_sealed)]
    if (
        endpoint.previous_secret_sealed
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        found.append(secrets.open_sealed(endpoint.pk, endpoint.previous_secret_sealed))
    return found


@db.atomic
def webhook_endpoint_disable(*, endpoint_id: Any, reason: str) -> None:
    """The dispatcher's: an endpoint that failed for the whole retry span (audited, with
    the dispatcher as the actor when no one else acts)."""
    endpoint = (
        WebhookEndpoint.objects.select_for_update()
        .filter(pk=endpoint_id, status=WebhookEndpoint.Status.ENABLED)
        .first()
    )
    if endpoint is None:
        return
    acting = context.current()
    actor = {} if acting.actor_type else context.system_actor("webhook-dispatcher")
    with context.bind(**actor):
        _compare_and_set(
            endpoint, status=WebhookEndpoint.Status.DISABLED, disabled_reason=reason[:300]
        )


class DeliveryInProgress(ConcurrentUpdate):
    """An attempt of this delivery is being made right now."""

    code = "delivery_in_progress"


@db.atomic
def webhook_delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Deliver one event again, now, with a fresh retry span and backoff (an operator's or
    the merchant's request; it keeps its place in the object's order). Refused while an
    attempt is in flight (it would go out twice at once)."""
    now = timezone.now()
    updated = (
        WebhookDelivery.objects.filter(pk=delivery.pk)
        .exclude(claimed_until__gt=now)
        .update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=now,
            first_attempt_at=None,
            attempts=0,
            version=F("version") + 1,
        )
    )
    if not updated:
        raise DeliveryInProgress(
            "This delivery is being attempted right now; resend it once the attempt is over.",
            current_version=None,
        )
    return WebhookDelivery.objects.get(pk=delivery.pk)


def _purge_batch(boundary: uuid.UUID, batch_size: int) -> int:
    done = (WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED)
    ids = list(
        WebhookDelivery.objects.filter(pk__lt=boundary, status__in=done)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    if not ids:
        return 0
    WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
    return WebhookDelivery.objects.filter(pk__in=ids).delete()[0]


def webhook_deliveries_purge(
    *, now: datetime.datetime | None = None, batch_size: int = 500, max_batches: int = 1000
) -> int:
    """Delete finished deliveries (and their attempts) older than
    ``WEBHOOK_DELIVERY_RETENTION``, one small transaction per batch. Pending ones are kept
    whatever their age. Ids are UUIDv7, so "older than" is a primary-key range."""
    cutoff = (now or timezone.now()) - settings.WEBHOOK_DELIVERY_RETENTION
    boundary = uuid.UUID(int=int(cutoff.timestamp() * 1000) << 80)
    deleted = 0
    for _ in range(max_batches):
        batch = db.run_atomic(_purge_batch, boundary, batch_size)
        deleted += batch
        if batch < batch_size:
            break
    return deleted


def _sealed_version(sealed: bytes | memoryview | None) -> int | None:
    return int.from_bytes(bytes(sealed)[:2], "big") if sealed else None


@db.atomic
def _reseal(endpoint_id: Any) -> bool:
    endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
    current = vault.current_key_version()
    if endpoint is None:
        return False
    changes: dict[str, Any] = {}
    for name in ("secret_sealed", "previous_secret_sealed"):
        sealed = getattr(endpoint, name)
        if sealed and _sealed_version(sealed) != current:
            changes[name] = secrets.seal(endpoint.pk, secrets.open_sealed(endpoint.pk, sealed))
    if not changes:
        return False
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(version=F("version") + 1, **changes)
    return True


def webhook_secrets_reseal(*, limit: int = 1000) -> int:
    """Seal every endpoint's secrets under the vault's current key (after a rotation), one
    small transaction each, so an old vault key can be retired without breaking the
    signatures. The number of endpoints re-sealed."""
    resealed = 0
    for endpoint_id in WebhookEndpoint.objects.filter(deleted=False).values_list("pk", flat=True)[
        :limit
    ]:
        resealed += _reseal(endpoint_id)
    return resealed
