"""One error shape for the whole API: ``{"error": {"type", "code", "message", "param"}}``.

Every exception a request can raise is mapped here, in one place. Nothing a client sends
produces a 500 or a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from ledger import exceptions as ledger_errors
from payflow.platform import context
from payflow.platform.db import TransactionRetriesExhausted

logger = logging.getLogger(__name__)


def error_body(type_: str, code: str, message: str, param: str | None = None, **extra: Any):
    """``request_id`` is the request's (the ``X-Request-ID`` answered), so a merchant who
    reports an error quotes the id our logs carry."""
    body = {"type": type_, "code": code, "message": message, "param": param}
    body.update(extra)
    body["request_id"] = context.current().request_id or None
    return {"error": body}


class ApiError(exceptions.APIException):
    """An error raised by the API layer itself with an explicit type, code and status."""

    def __init__(
        self,
        status_code: int,
        type_: str,
        code: str,
        message: str,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = error_body(type_, code, message, param, **extra)


# Domain error → (HTTP status, error type)
LEDGER_STATUS: list[tuple[type[Exception], int, str]] = [
    (ledger_errors.NotFound, 404, "invalid_request_error"),
    (ledger_errors.InvalidCard, 400, "card_error"),
    (ledger_errors.InvalidRequest, 400, "invalid_request_error"),
    (ledger_errors.ConcurrentUpdate, 409, "conflict_error"),
    (ledger_errors.InvalidStateTransition, 422, "invalid_request_error"),
    (ledger_errors.AmountExceedsRemaining, 422, "invalid_request_error"),
    (ledger_errors.InsufficientBalance, 422, "invalid_request_error"),
    (ledger_errors.MerchantInactive, 403, "permission_error"),
    (ledger_errors.LiveModeUnavailable, 403, "permission_error"),
    (ledger_errors.LedgerError, 422, "invalid_request_error"),
]


def _ledger_response(exc: ledger_errors.LedgerError) -> Response:
    status_code, type_ = next(
        (code, kind) for error_class, code, kind in LEDGER_STATUS if isinstance(exc, error_class)
    )
    extra: dict[str, Any] = {}
    headers = {}
    if isinstance(exc, ledger_errors.ConcurrentUpdate):
        extra["current_version"] = exc.current_version
        if exc.current_version is not None:
            headers["ETag"] = f'"{exc.current_version}"'
    body = error_body(type_, exc.code, exc.message, exc.param, **extra)
    return Response(body, status=status_code, headers=headers)


def _first_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str]:
    """The first (param, message, code) of DRF's nested validation errors."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            param = f"{prefix}[{name}]" if prefix and name else (name or prefix)
            return _first_validation_error(value, param)
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    code = getattr(detail, "code", "invalid")
    return (prefix or None, str(detail), code)


DRF_CODES: dict[type[exceptions.APIException], tuple[int, str, str]] = {
    exceptions.NotAuthenticated: (401, "authentication_error", "missing_api_key"),
    exceptions.AuthenticationFailed: (401, "authentication_error", "invalid_api_key"),
    exceptions.PermissionDenied: (403, "permission_error", "forbidden"),
    exceptions.NotFound: (404, "invalid_request_error", "resource_missing"),
    exceptions.MethodNotAllowed: (405, "invalid_request_error", "method_not_allowed"),
    exceptions.NotAcceptable: (406, "invalid_request_error", "not_acceptable"),
    exceptions.UnsupportedMediaType: (415, "invalid_request_error", "unsupported_media_type"),
    exceptions.Throttled: (429, "rate_limit_error", "rate_limited"),
    exceptions.ParseError: (400, "invalid_request_error", "malformed_json"),
}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error in the one shape."""
    if isinstance(exc, ApiError):
        return Response(exc.body, status=exc.status_code)
    if isinstance(exc, ledger_errors.LedgerError):
        return _ledger_response(exc)
    if isinstance(exc, TransactionRetriesExhausted):
        return Response(
            error_body("api_error", "contention", "The object is busy; retry the request."),
            status=409,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_validation_error(exc.detail)
        code = code if code not in ("invalid", "required", "null") else "parameter_invalid"
        if code == "parameter_invalid" and message.startswith("This field is required"):
            code = "parameter_missing"
        return Response(error_body("invalid_request_error", code, message, param), status=400)
    for exc_class, (status_code, type_, code) in DRF_CODES.items():
        if isinstance(exc, exc_class):
            headers = {}
            wait = getattr(exc, "wait", None)  # Throttled's, set in its constructor (not stubbed)
            if wait is not None:
                headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            if status_code == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="api"'
            return Response(
                error_body(type_, code, str(exc.detail)), status=status_code, headers=headers
            )
    if isinstance(exc, exceptions.APIException):
        return Response(
            error_body("invalid_request_error", exc.default_code, str(exc.detail)),
            status=exc.status_code,
        )
    if database_unavailable(exc):
        request = context.get("request")
        if (
            request is None
            or request.method in ("GET", "HEAD", "OPTIONS")
            or (request.headers.get("Idempotency-Key"))
        ):
            logger.warning("database unavailable (%s): answered 503, retry", exc)
            return Response(
                error_body(
                    "api_error",
                    "service_unavailable",
                    "The service is briefly unavailable; retry the request (with the same "
                    "Idempotency-Key: it is then done at most once).",
                ),
                status=503,
                headers={"Retry-After": "1"},
            )
        # Without a key the request may have committed before the connection was lost:
        # sending it again could do it twice. Not "retry", but "look first".
        logger.warning("database unavailable (%s): answered 503, outcome unknown", exc)
        return Response(
            error_body(
                "api_error",
                "outcome_unknown",
                "The service became unavailable during the request, which may or may not "
                "have taken effect: look the object up before sending it again, and send "
                "writes with an Idempotency-Key to make retries safe.",
            ),
            status=503,
        )
    return None  # a real bug: DRF re-raises, handler500 answers with the shape below


#: MariaDB client and server errors that say "not reachable right now", not "wrong": the
#: server is gone or unreachable (2002, 2003, 2006, 2013, 1053, 4031), the Galera node
#: left the primary component (1047). A failover behind HAProxy produces them for a few
#: seconds. A lock wait timeout (1205) is not among them: it follows long contention, a
#: bug to see (a 500 logged as an error), not a blip to retry into.
UNAVAILABLE_CODES = frozenset({1047, 1053, 2002, 2003, 2006, 2013, 4031})


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database being briefly unavailable (a 503, not a 500): the
    request may have done nothing or everything (a lost COMMIT answer), which is why the
    answer asks for a retry with the same Idempotency-Key."""
    if isinstance(exc, InterfaceError):
        return True
    return isinstance(exc, OperationalError) and bool(exc.args) and exc.args[0] in UNAVAILABLE_CODES


def json_handler(status_code: int, type_: str, code: str, message: str):
    def view(request, exception=None):
        return JsonResponse(error_body(type_, code, message), status=status_code)

    return view


handler404 = json_handler(404, "invalid_request_error", "resource_missing", "Not found.")
handler500 = json_handler(500, "api_error", "internal_error", "Something went wrong on our side.")
handler403 = json_handler(403, "permission_error", "forbidden", "Forbidden.")
handler400 = json_handler(400, "invalid_request_error", "bad_request", "Bad request.")
