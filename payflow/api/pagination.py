"""Cursor pagination over time-ordered UUIDv7 ids: newest first, ``limit`` 1 to 100,
``starting_after`` / ``ending_before`` (public ids), like merchants know from Stripe."""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from ledger import ids
from payflow.api.errors import ApiError
from payflow.api.serializers import id_pattern

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", "parameter_invalid", message, param)


# Only ASCII digits, and few of them: str.isdigit() accepts "²", and int() of thousands of
# digits raises.
_SMALL_INTEGER = re.compile(r"[0-9]{1,3}")
_TIMESTAMP = re.compile(r"-?[0-9]{1,11}")
# What a MariaDB DATETIME column can hold, in UTC.
_EARLIEST = datetime.datetime(1000, 1, 2, tzinfo=datetime.UTC)
_LATEST = datetime.datetime(9999, 12, 30, tzinfo=datetime.UTC)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not _SMALL_INTEGER.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad("limit", f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def parse_time(param: str, raw: str) -> datetime.datetime:
    """A Unix timestamp (seconds) or an ISO 8601 date-time, within what the database holds."""
    try:
        if _TIMESTAMP.fullmatch(raw):
            value = datetime.datetime.fromtimestamp(int(raw), tz=datetime.UTC)
        else:
            parsed = parse_datetime(raw)
            if parsed is None:
                raise _bad(param, f"{param} must be a Unix timestamp or an ISO 8601 date-time.")
            value = parsed
            if not timezone.is_aware(value):
                value = value.replace(tzinfo=datetime.UTC)
            value = value.astimezone(datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _bad(param, f"{param} is not a valid date-time.") from exc
    if not _EARLIEST <= value <= _LATEST:
        raise _bad(param, f"{param} is out of range.")
    return value


def created_filter(params, field: str) -> dict[str, datetime.datetime]:
    """``created[gte]`` / ``created[lte]`` as lookups on ``field``. An object's ``created``
    is whole seconds, so ``created[lte]=T`` as a Unix timestamp includes all of second T
    (what ``created == T`` shows), not only its first instant."""
    lookups = {}
    if "created[gte]" in params:
        lookups[f"{field}__gte"] = parse_time("created[gte]", params["created[gte]"])
    if "created[lte]" in params:
        raw = params["created[lte]"]
        value = parse_time("created[lte]", raw)
        if _TIMESTAMP.fullmatch(raw) and value < _LATEST:
            lookups[f"{field}__lt"] = value + datetime.timedelta(seconds=1)
        else:
            lookups[f"{field}__lte"] = value
    return lookups


def paginate(
    request,
    queryset: QuerySet,
    kind: str,
    render: Callable[[Any], dict],
    prepare: Callable[[list], None] | None = None,
) -> dict[str, Any]:
    """A cursor page of ``queryset`` (newest first), each item through ``render``;
    ``prepare`` sees the page's items first (to load what they all need at once)."""
    params = request.query_params
    limit = parse_limit(params.get("limit"))
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise _bad("ending_before", "Use starting_after or ending_before, not both.")
    if after:
        page = list(
            queryset.filter(pk__lt=_cursor(kind, after, "starting_after")).order_by("-pk")[
                : limit + 1
            ]
        )
    elif before:
        page = list(
            queryset.filter(pk__gt=_cursor(kind, before, "ending_before")).order_by("pk")[
                : limit + 1
            ]
        )
        has_more = len(page) > limit
        page = list(reversed(page[:limit]))
        return _page(request, page, has_more, render, prepare)
    else:
        page = list(queryset.order_by("-pk")[: limit + 1])
    return _page(request, page[:limit], len(page) > limit, render, prepare)


def _cursor(kind: str, public_id: str, param: str):
    try:
        return ids.decode(kind, public_id)
    except Exception as exc:
        raise _bad(param, f"{param} must be a {kind} id.") from exc


def page_parameters(kind: str) -> list[OpenApiParameter]:
    """The OpenAPI description of ``limit``, ``starting_after`` and ``ending_before``."""
    # An empty cursor is no cursor (``?starting_after=`` is the first page).
    cursor = {"type": "string", "pattern": id_pattern(kind, or_empty=True)}
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            description=f"1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
        ),
        OpenApiParameter(
            "starting_after", cursor, description=f"A {kind} id: the page after it (older)."
        ),
        OpenApiParameter(
            "ending_before",
            cursor,
            description=f"A {kind} id: the page before it (newer). Not with starting_after.",
        ),
    ]


@functools.cache
def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The OpenAPI description of a page of ``item`` (the body ``_page`` builds); one class
    per name, so two lists of one kind are one component."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "object": serializers.CharField(),
            "url": serializers.CharField(),
            "has_more": serializers.BooleanField(),
            "data": item(many=True),
        },
    )


def _page(request, items: list, has_more: bool, render, prepare=None) -> dict[str, Any]:
    if prepare is not None:
        prepare(items)
    return {
        "object": "list",
        "url": request.path,
        "has_more": has_more,
        "data": [render(item) for item in items],
    }
