"""``Idempotency-Key`` on every POST: one effect per key, whatever crashes or retries.

- **Claim.** The request's first transaction that changes the ledger (a payment's intent)
  inserts the record (unique per merchant and key digest: keys are compared byte for
  byte), just before it commits: the claim costs no transaction of its own, and nothing
  of the request is committed without it. If the key is taken, the INSERT collides, that
  transaction rolls back whole (``ClaimCollision``) and the request is answered from the
  existing record, as below. A request that changes nothing stores its answer (when it is
  stored at all) by one INSERT at the end, colliding the same way.
- **Fence.** Every later transaction of the request checks the claim's ``fence`` by
  compare-and-set just before it commits (``db.before_commit``), renewing the claim's
  lease. A request whose claim was taken over commits nothing more (``ClaimLost``).
- **Link.** The transaction that creates (or, for a capture or cancel, changes) the
  endpoint's object writes its kind and id into the record, in that same transaction.
- **Completion.** The response is stored once the request is done; for payment create,
  by the outcome's own transaction (``complete_in_transaction``): a payment is two
  transactions, intent and outcome, the record's INSERT in the first and its completion in
  the second.
- **Replay.** Same key, method, path and body after completion: the stored response,
  with ``Idempotent-Replayed: true``. Same key with another body or endpoint: 409
  ``idempotency_error``.
- **Duplicates in flight.** While the claim's lease (``IDEMPOTENCY_LOCK_SECONDS``) runs:
  409 ``request_in_progress`` (the client retries shortly), unless the linked object is
  already final, which is then reported.
- **After a crash.** A claim whose lease ran out is taken over (fence + 1). If the dead
  request had linked an object, the key belongs to that object: the retry *resumes* it
  (``transaction_resume``: inquiry at the acquirer, never a second authorization) and
  reports it as the endpoint would have; it never runs the request again. Only a claim
  that linked nothing is run again, and the fence stops the old request if it was merely
  slow.
- **Not stored** (the key can be used again): validation errors (400), authentication
  (401), conflicts (409), rate limits (429) and server errors (5xx), unless an object was
  already linked. Such an answer is given only when the key is free: a retry of a
  completed request gets the stored answer even if the request would now be refused (the
  merchant suspended since, the token erased). A 202 (the acquirer's answer is not known
  yet) is not stored either: the claim is released at once so the next retry resumes
  the payment.
- Records are kept ``IDEMPOTENCY_RETENTION_HOURS`` (at least 24 h) and purged by beat.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from ledger.models import AcquirerCommand, CardToken, Transaction, TransactionType
from ledger.selectors import InvariantReport, transaction_awaits_answer, transaction_in_flight
from ledger.services.recovery import transaction_resume
from payflow.api.auth import request_scope
from payflow.api.errors import ApiError
from payflow.models import IdempotencyRecord
from payflow.platform import context, db

logger = logging.getLogger(__name__)

NOT_STORED = {400, 401, 409, 429}
MAX_KEY_LENGTH = 255
_CLAIM_ATTEMPTS = 3


class ClaimLost(Exception):
    """This request's claim on its Idempotency-Key was taken over by a retry."""


@dataclass
class Claim:
    """The claim the current request holds: which record (``None`` until the request's
    first transaction inserts it), at which fence, linking what."""

    record_id: int | None
    fence: int
    links: tuple[str, str]  # (object kind, "insert" or "update")
    linked: bool = False
    #: For a claim not inserted yet: the record's columns (merchant, mode, key, request).
    columns: dict[str, Any] | None = None
    #: The endpoint's answer for its object once final (``view.report``): given, the
    #: transaction that makes the object final also completes the record with it.
    respond: Callable[[Any], Response] | None = None
    completed: bool = False


class ClaimCollision(Exception):
    """The record this request's first transaction inserted exists already (another
    request with the key): that transaction was rolled back whole."""


_current: contextvars.ContextVar[Claim | None] = contextvars.ContextVar(
    "idempotency_claim", default=None
)


@contextlib.contextmanager
def _holding(claim: Claim) -> Iterator[Claim]:
    token = _current.set(claim)
    try:
        yield claim
    finally:
        _current.reset(token)


# --- the fence, checked by every transaction of a claimed request ------------------------


def _object_kind(sender: Any, instance: Any) -> str:
    if sender is CardToken:
        return "token"
    if sender is Transaction:
        return instance.type
    return ""


def fence_ledger_change(sender: Any, instance: Any, action: str, **kwargs: Any) -> None:
    """Receiver of ``ledger_changed``: a change made under a claim checks the claim's fence
    before its transaction commits (the request's first transaction inserts the claim
    instead), and the endpoint's object is linked to the claim."""
    claim = _current.get()
    if claim is None:
        return
    candidate = None
    if not claim.linked and (_object_kind(sender, instance), action) == claim.links:
        candidate = (claim.links[0], instance.pk)
    db.before_commit(_fence, (claim, candidate, sender, instance))


def _fence(items: list[tuple[Claim, Any, Any, Any]]) -> None:
    claim = items[0][0]
    link = next((candidate for _, candidate, _s, _i in items if candidate is not None), None)
    changes: dict[str, Any] = {"locked_until": _lease_end()}
    if link is not None:
        changes.update(object_kind=link[0], object_id=link[1])
    completion = _completion(claim, link, items)
    if completion is not None:
        changes.update(completion)
    if claim.record_id is None:
        _insert_claim(claim, changes)
    else:
        held = IdempotencyRecord.objects.filter(
            pk=claim.record_id, fence=claim.fence, state=IdempotencyRecord.IN_PROGRESS
        ).update(**changes)
        if not held:
            raise ClaimLost(f"idempotency record {claim.record_id} was taken over")

    def committed() -> None:  # only once this transaction has committed (a retry runs again)
        if link is not None:
            claim.linked = True
        if completion is not None:
            claim.completed = True

    transaction.on_commit(committed)


def _insert_claim(claim: Claim, changes: dict[str, Any]) -> None:
    """Insert the claim in the request's first transaction (the intent), or refuse the
    whole transaction when another request holds the key (``ClaimCollision``)."""
    record = IdempotencyRecord(**(claim.columns or {}), **changes)
    try:
        record.save(force_insert=True)
    except IntegrityError:
        raise ClaimCollision() from None

    claim.record_id, claim.fence = record.pk, record.fence

    def rolled_back() -> None:
        # A transaction rolled back after the INSERT (a deadlock or a certification
        # failure, then run again by payflow.platform.db.atomic) inserts the record again
        # rather than fencing one that does not exist.
        claim.record_id, claim.fence = None, 1

    db.on_rollback(rolled_back)


def _completion(claim: Claim, link: Any, items: list) -> dict[str, Any] | None:
    """The record's completed columns when this transaction makes the endpoint's object
    final and the endpoint asked for it (``respond``): the object as this transaction
    leaves it, no acquirer command booked with it (a command still to be answered keeps
    the object in flight)."""
    if claim.respond is None:
        return None
    if any(sender is AcquirerCommand for _c, _l, sender, _i in items):
        return None
    object_id = link[1] if link is not None else _claim_object_id(claim, items)
    if object_id is None:
        return None
    final = [i for _c, _l, _s, i in items if isinstance(i, Transaction) and i.pk == object_id]
    if not final or transaction_awaits_answer(final[-1]):
        return None
    response = claim.respond(final[-1])
    if not _storable(response.status_code):
        return None
    body, headers = _stored_form(response)
    return {
        "state": IdempotencyRecord.COMPLETED,
        "response_status": response.status_code,
        "response_body": body,
        "response_headers": headers,
        "completed_at": timezone.now(),
    }


def _claim_object_id(claim: Claim, items: list) -> Any:
    """The object an already linked claim stands for, when this transaction changes it."""
    if not claim.linked:
        return None
    kind = claim.links[0]
    for _c, _l, sender, instance in items:
        if _object_kind(sender, instance) == kind:
            return instance.pk
    return None


def _storable(status_code: int) -> bool:
    return status_code not in NOT_STORED and status_code < 500 and status_code != 202


def _lease_end() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)


# --- claiming ---------------------------------------------------------------------------


def _request_hash(request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    message = f"{request.method}\n{request.path}\n{body}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


@db.atomic
def _take_over(record: IdempotencyRecord) -> bool:
    """Raise the fence of an expired claim; False if someone else did it first."""
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk,
        fence=record.fence,
        state=IdempotencyRecord.IN_PROGRESS,
        locked_until__lte=timezone.now(),
    ).update(fence=record.fence + 1, locked_until=_lease_end())
    if taken:
        record.fence += 1
    return bool(taken)


def _in_progress() -> ApiError:
    return ApiError(
        409,
        "idempotency_error",
        "request_in_progress",
        "A request with this Idempotency-Key is in progress; retry shortly.",
    )


@dataclass
class _Outcome:
    kind: str  # "run", "replay", "report" or "resume"
    record: IdempotencyRecord


def _columns(request, key: str) -> dict[str, Any]:
    """The record's columns for a claim on ``key`` (inserted by the request's first
    transaction). A key belongs to the merchant and the mode: test and live records never
    meet."""
    return {
        "merchant_id": request.auth.merchant_id,
        "livemode": request.auth.livemode,
        "key": key,
        "method": request.method,
        "path": request.path,
        "request_hash": _request_hash(request),
    }


def _record_for(columns: dict[str, Any]) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(
        merchant_id=columns["merchant_id"],
        livemode=columns["livemode"],
        key_digest=IdempotencyRecord.digest(columns["key"]),
    ).first()


@db.atomic
def _insert_completed(columns: dict[str, Any], response: Response) -> bool:
    """Store the answer of a request that changed nothing (a 404, a 422, …) under its key;
    False when the key is taken (another request's record)."""
    body, headers = _stored_form(response)
    record = IdempotencyRecord(
        **columns,
        state=IdempotencyRecord.COMPLETED,
        locked_until=timezone.now(),
        response_status=response.status_code,
        response_body=body,
        response_headers=headers,
        completed_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def _existing(request, record: IdempotencyRecord, request_hash: str, load) -> _Outcome:
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
        return _Outcome("replay", record)
    linked = load(record) if record.object_id else None
    if record.object_id and linked is None:
        raise ApiError(
            409,
            "idempotency_error",
            "idempotency_error",
            "The object this Idempotency-Key stands for is not available.",
        )
    if linked is not None and not _in_flight(linked):
        return _Outcome("report", record)
    if record.locked_until > timezone.now() or not _take_over(record):
        raise _in_progress()
    return _Outcome("resume" if record.object_id else "run", record)


def _in_flight(obj: Any) -> bool:
    return isinstance(obj, Transaction) and transaction_in_flight(obj)


# --- finishing ----------------------------------------------------------------------------


def _stored_form(response: Response) -> tuple[Any, dict[str, str]]:
    body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
    headers = {name: response[name] for name in ("ETag", "Location") if response.has_header(name)}
    return body, headers


@db.atomic
def _complete(record_id: int, fence: int, response: Response) -> bool:
    body, headers = _stored_form(response)
    return bool(
        IdempotencyRecord.objects.filter(
            pk=record_id, fence=fence, state=IdempotencyRecord.IN_PROGRESS
        ).update(
            state=IdempotencyRecord.COMPLETED,
            response_status=response.status_code,
            response_body=body,
            response_headers=headers,
            completed_at=timezone.now(),
        )
    )


@db.atomic
def _release(record_id: int, fence: int) -> None:
    """Free the key for another try, unless an object was linked (then it stays bound)."""
    IdempotencyRecord.objects.filter(
        pk=record_id, fence=fence, state=IdempotencyRecord.IN_PROGRESS, object_id__isnull=True
    ).delete()


@db.atomic
def _hand_over(record_id: int, fence: int) -> None:
    """End the lease now: the next retry resumes the linked object at once."""
    IdempotencyRecord.objects.filter(
        pk=record_id, fence=fence, state=IdempotencyRecord.IN_PROGRESS
    ).update(locked_until=timezone.now())


def _finish(claim: Claim, response: Response) -> None:
    if claim.completed or claim.record_id is None:
        return  # completed by the object's last transaction, or never claimed
    if response.status_code == 202:
        _hand_over(claim.record_id, claim.fence)
    elif not _storable(response.status_code):
        _release(claim.record_id, claim.fence)
    elif not _complete(claim.record_id, claim.fence, response):
        logger.warning("idempotency record %s was taken over before it completed", claim.record_id)


def _replay(record: IdempotencyRecord) -> Response:
    headers = {**record.response_headers, "Idempotent-Replayed": "true"}
    return Response(record.response_body, status=record.response_status, headers=headers)


def _report(view, request, record: IdempotencyRecord, obj: Any) -> Response:
    """Answer for the object the key is bound to, as the endpoint would have; store the
    answer once the object is final."""
    response = view.report(request, obj)
    if not _in_flight(obj) and response.status_code != 202:
        _complete(record.pk, record.fence, response)
    response["Idempotent-Replayed"] = "true"
    return response


def _resume(view, request, record: IdempotencyRecord, load) -> Response:
    claim = Claim(record.pk, record.fence, ("", ""), linked=True)
    with _holding(claim), context.bind(reason="resumed by a retry with its Idempotency-Key"):
        try:
            transaction_resume(transaction_id=record.object_id)
        except ClaimLost:
            raise _in_progress() from None
    obj = load(record)
    if _in_flight(obj):
        _hand_over(record.pk, record.fence)  # still unknown: the next retry asks again
    return _report(view, request, record, obj)


# --- the decorator --------------------------------------------------------------------------


def _loader(request) -> Callable[[IdempotencyRecord], Any]:
    scope = request_scope(request)

    def load(record: IdempotencyRecord) -> Any:
        if record.object_id is None:
            return None
        if record.object_kind == "token":
            return CardToken.objects.filter(pk=record.object_id, **scope).first()
        if record.object_kind in TransactionType.values:
            return (
                Transaction.objects.select_related("card_token")
                .filter(pk=record.object_id, type=record.object_kind, **scope)
                .first()
            )
        return None

    return load


def _key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable()):
        raise ApiError(
            400,
            "invalid_request_error",
            "parameter_invalid",
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
            "Idempotency-Key",
        )
    return key


def idempotent(links: tuple[str, str], *, complete_in_transaction: bool = False):
    """Decorate a DRF view's ``post`` so it honours ``Idempotency-Key``.

    ``links`` names the endpoint's object: ``("payment", "insert")`` for the payment a
    create inserts, ``("payment", "update")`` for the payment a capture changes. The view
    answers ``report(request, obj)`` for a retry that finds the object already there.

    The claim costs no transaction of its own: the request's first transaction that
    changes the ledger inserts the record (with the link, when that transaction makes the
    object); if the key is taken, that transaction rolls back whole and the request is
    answered as the key's record says (replay, report, resume, 409). A request that changes
    nothing stores its answer, when storable, in one INSERT at the end (and an answer that
    is not stored, a 400 say, is given only if the key is not taken: a retry of a completed
    request replays it whatever the request would say now).

    ``complete_in_transaction``: the transaction that makes the object final (not waiting
    for the acquirer, no command booked with it) also completes the record with
    ``report(request, obj)``, which must then be the endpoint's answer (payment create:
    the outcome's transaction, no transaction after it).
    """

    def decorate(handler):
        @functools.wraps(handler)
        def wrapper(view, request, *args: Any, **kwargs: Any) -> Response:
            key = _key(request)
            if key is None:
                return handler(view, request, *args, **kwargs)
            load = _loader(request)
            claim = Claim(None, 1, links, columns=_columns(request, key))
            if complete_in_transaction:
                claim.respond = functools.partial(view.report, request)
            response = _run(view, request, claim, load, handler, args, kwargs)
            if response is not None:
                return response
            return _answer_existing(view, request, claim, links, load, handler, args, kwargs)

        return wrapper

    return decorate


def _answer_existing(view, request, claim, links, load, handler, args, kwargs) -> Response:
    """The key is taken: answer as its record says."""
    columns = claim.columns
    for _ in range(_CLAIM_ATTEMPTS):
        record = _record_for(columns)
        if record is None:
            raise _in_progress()  # released a moment ago: the client's next retry runs it
        outcome = _existing(request, record, columns["request_hash"], load)
        if outcome.kind == "replay":
            return _replay(outcome.record)
        if outcome.kind == "report":
            return _report(view, request, outcome.record, load(outcome.record))
        if outcome.kind == "resume":
            return _resume(view, request, outcome.record, load)
        # an expired claim that linked nothing, taken over (fence + 1): run the request
        taken = Claim(outcome.record.pk, outcome.record.fence, links, columns=columns)
        taken.respond = claim.respond
        response = _run(view, request, taken, load, handler, args, kwargs)
        if response is not None:
            return response
    raise _in_progress()


def _run(view, request, claim: Claim, load, handler, args, kwargs) -> Response | None:
    """Run the request under ``claim``; None when its key turned out to be taken."""
    with _holding(claim):
        try:
            response = handler(view, request, *args, **kwargs)
        except ClaimLost:
            return _after_loss(view, request, claim, load)
        except ClaimCollision:
            return None
        except Exception as exc:
            response = view.handle_exception(exc)
    if claim.record_id is None and claim.columns is not None:
        # Nothing this request did changed the ledger: the key was never claimed.
        if _storable(response.status_code):
            return response if _insert_completed(claim.columns, response) else None
        return None if _record_for(claim.columns) is not None else response
    _finish(claim, response)
    return response


def _after_loss(view, request, claim: Claim, load) -> Response:
    """A retry took this request's claim over: answer with what the key now stands for."""
    if claim.record_id is None:  # only a claim that was inserted can be taken over
        raise _in_progress()
    current = IdempotencyRecord.objects.filter(pk=claim.record_id).first()
    obj = load(current) if current is not None and current.object_id else None
    if obj is None:
        raise _in_progress()
    response = view.report(request, obj)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_check_records(report: InvariantReport) -> None:
    """Invariant (registered with ``ledger_check_invariants``): every Idempotency-Key record
    that answered 2xx names its object, and every object a record names exists."""
    linked = IdempotencyRecord.objects.filter(object_id__isnull=False)
    missing = linked.exclude(object_kind="token").filter(
        ~Exists(Transaction.objects.filter(pk=OuterRef("object_id")))
    ) | linked.filter(object_kind="token").filter(
        ~Exists(CardToken.objects.filter(pk=OuterRef("object_id")))
    )
    for record in missing[:100]:
        report.problems.append(
            f"Idempotency-Key record {record.pk} names {record.object_kind} {record.object_id}, "
            "which does not exist"
        )
    unlinked = IdempotencyRecord.objects.filter(
        state=IdempotencyRecord.COMPLETED,
        response_status__gte=200,
        response_status__lt=300,
        object_id__isnull=True,
    )
    for record in unlinked[:100]:
        report.problems.append(
            f"Idempotency-Key record {record.pk} answered {record.response_status} "
            "but names no object"
        )
