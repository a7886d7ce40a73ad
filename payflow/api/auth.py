"""``Authorization: Bearer sk_…`` (or HTTP Basic with the key as user name, as Stripe's
clients send it): the merchant behind an API key."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, cast

import redis
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, throttling

from ledger.models import ApiKey, Merchant
from ledger.services.api_keys import api_key_authenticate, api_key_touch
from payflow.platform import context

logger = logging.getLogger(__name__)

#: What a cache that cannot be reached raises (Redis: refused, reset, timed out); any
#: other error of the rate limit is a bug and answers 500 as bugs do.
CACHE_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``request.user`` is the key's merchant; ``request.auth`` the ApiKey."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None  # → 401 missing_api_key via NotAuthenticated
        scheme, _, credentials = header.partition(" ")
        secret = _basic_user(credentials) if scheme == "Basic" else credentials.strip()
        if scheme not in (self.keyword, "Basic") or not secret:
            # Never repeats what was sent: it is a secret, or may be a card number.
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Authorization: Bearer sk_…' "
                "(or HTTP Basic auth with the key as user name and no password)."
            )
        api_key = api_key_authenticate(secret)
        if api_key is None:
            # The same answer for unknown, malformed and revoked keys: nothing to probe.
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_key_touch(api_key=api_key)
        context.set_actor("api_key", str(api_key.pk), f"{api_key} ({api_key.merchant.name})")
        context.set_merchant(str(api_key.merchant_id))
        return (api_key.merchant, api_key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def _basic_user(credentials: str) -> str:
    """The user name of HTTP Basic credentials (``base64(user:password)``): the key. The
    password is ignored, as Stripe's clients send none. ``""`` when undecodable."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0].strip()


def request_merchant(request: Any) -> Merchant:
    """The merchant whose key authenticated the request (DRF types ``request.user`` as a
    Django user; here it is always the key's merchant)."""
    return cast(Merchant, request.user)


def request_livemode(request: Any) -> bool:
    """The mode of the key that authenticated the request."""
    return cast(ApiKey, request.auth).livemode


def request_scope(request) -> dict:
    """Every merchant-facing query's filter: the key's merchant and the key's mode. A test
    key never sees a live object, nor a live key a test one (404, like another
    merchant's)."""
    return {"merchant": request_merchant(request), "livemode": request_livemode(request)}


class MerchantAuthenticated:
    """Permission: an API key authenticated the request."""

    def has_permission(self, request, view):
        return request.auth is not None

    def has_object_permission(self, request, view, obj):
        return True


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """Per-key request rate (``API_THROTTLE_RATE``), answered with 429 and Retry-After."""

    scope = "api_key"

    def get_rate(self) -> str:
        # Read at request time, so a settings change (or a test) takes effect at once.
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if request.auth is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}

    def allow_request(self, request, view) -> bool:
        """Fails open: while the shared cache (``CACHE_URL``, Redis) is unreachable, the
        request is let through unthrottled and a warning logged; a rate limit must not
        take payments down with it (the drills found 500s while Redis was stopped)."""
        try:
            return super().allow_request(request, view)
        except CACHE_UNAVAILABLE as exc:
            logger.warning("API rate limit not applied: the cache is unavailable (%s)", exc)
            return True


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the bearer API key in the OpenAPI schema."""

    target_class = "payflow.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A secret key `sk_test_…` or `sk_live_…`: "
            "`Authorization: Bearer sk_test_…`, or HTTP Basic auth with the key as user "
            "name and no password (`curl -u sk_test_…:`).",
        }
