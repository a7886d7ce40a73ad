"""``Idempotency-Key`` on every POST.

- First request with a key: claimed by inserting a row (unique per merchant and key) and
  committing *before* the work starts; its response is stored when it finishes.
- Same key, same method, path and body: the stored response is replayed with
  ``Idempotent-Replayed: true``.
- Same key with another body or on another endpoint: 409 ``idempotency_error``.
- Same key while the first request is still running: 409 ``request_in_progress`` at once
  (we answer rather than make the client wait: the client retries with the same key and
  then gets the replay). A claim whose request died is taken over after
  ``IDEMPOTENCY_LOCK_SECONDS``.
- Not stored (the client may retry with the same key): validation errors (400),
  authentication (401), conflicts (409), rate limits (429) and server errors (5xx).
- Records are kept ``IDEMPOTENCY_RETENTION_HOURS`` (at least 24 h) and purged by beat.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from payflow import db
from payflow.api.errors import ApiError
from payflow.models import IdempotencyRecord

NOT_STORED = {400, 401, 409, 429}
MAX_KEY_LENGTH = 255


def _request_hash(request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    message = f"{request.method}\n{request.path}\n{body}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


@db.atomic
def _insert_claim(merchant_id, key: str, method: str, path: str, request_hash: str, now):
    return IdempotencyRecord.objects.create(
        merchant_id=merchant_id,
        key=key,
        method=method,
        path=path,
        request_hash=request_hash,
        locked_until=now + datetime.timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS),
    )


@db.atomic
def _take_over_stale(record: IdempotencyRecord, now) -> bool:
    lock = now + datetime.timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
    return bool(
        IdempotencyRecord.objects.filter(
            pk=record.pk, state=IdempotencyRecord.IN_PROGRESS, locked_until=record.locked_until
        ).update(locked_until=lock)
    )


def _claim(request, key: str) -> tuple[IdempotencyRecord, bool]:
    """Return (record, is_replay). Raises ApiError for conflicts."""
    merchant_id, request_hash, now = (
        request.auth.merchant_id,
        _request_hash(request),
        timezone.now(),
    )
    try:
        return _insert_claim(
            merchant_id, key, request.method, request.path, request_hash, now
        ), False
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.get(merchant_id=merchant_id, key=key)
    if (record.method, record.path) != (request.method, request.path):
        raise ApiError(
            409,
            "idempotency_error",
            "idempotency_error",
            "This Idempotency-Key was used for another endpoint.",
        )
    if not hmac.compare_digest(record.request_hash, request_hash):
        raise ApiError(
            409,
            "idempotency_error",
            "idempotency_error",
            "This Idempotency-Key was used with different parameters.",
        )
    if record.state == IdempotencyRecord.COMPLETED:
        return record, True
    if record.locked_until > now or not _take_over_stale(record, now):
        raise ApiError(
            409,
            "idempotency_error",
            "request_in_progress",
            "A request with this Idempotency-Key is in progress; retry shortly.",
        )
    return record, False


@db.atomic
def _complete(record: IdempotencyRecord, response: Response) -> None:
    body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
    headers = {name: response[name] for name in ("ETag", "Location") if response.has_header(name)}
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.COMPLETED,
        response_status=response.status_code,
        response_body=body,
        response_headers=headers,
        completed_at=timezone.now(),
    )


@db.atomic
def _release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyRecord.IN_PROGRESS).delete()


def _replay(record: IdempotencyRecord) -> Response:
    headers = {**record.response_headers, "Idempotent-Replayed": "true"}
    return Response(record.response_body, status=record.response_status, headers=headers)


def idempotent(handler):
    """Decorate a DRF view's ``post`` so it honours ``Idempotency-Key``."""

    @functools.wraps(handler)
    def wrapper(view, request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ApiError(
                400,
                "invalid_request_error",
                "parameter_invalid",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
                "Idempotency-Key",
            )
        record, is_replay = _claim(request, key)
        if is_replay:
            return _replay(record)
        try:
            response = handler(view, request, *args, **kwargs)
        except Exception as exc:
            response = view.handle_exception(exc)
        if response.status_code in NOT_STORED or response.status_code >= 500:
            _release(record)
        else:
            _complete(record, response)
        return response

    return wrapper


@db.atomic
def idempotency_purge(*, older_than_hours: int | None = None, batch_size: int = 1000) -> int:
    """Delete one batch of records older than the retention; returns how many."""
    hours = max(24, older_than_hours or settings.IDEMPOTENCY_RETENTION_HOURS)
    cutoff = timezone.now() - datetime.timedelta(hours=hours)
    ids = list(
        IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
            :batch_size
        ]
    )
    return IdempotencyRecord.objects.filter(pk__in=ids).delete()[0] if ids else 0
