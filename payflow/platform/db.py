"""Galera-safe transactions and time-ordered ids.

``atomic`` is the one transaction wrapper every write path uses (DESIGN.md section 5).

On Galera, row locks are local to a node: two nodes can both "hold" a row, and the loser
only finds out at COMMIT, when certification fails with MySQL error 1213 (the same code
as an InnoDB deadlock). A lock wait that runs out (1205) is also worth another try. In both
cases the server has already rolled the whole transaction back, so the only correct
reaction is to run the whole unit of work again from the start, with fresh reads.
``atomic`` does exactly that, a bounded number of times, with jittered exponential backoff,
counting every retry in ``payflow_db_transaction_retries_total``.

Why a retry never repeats a call to the outside world: calls that leave the process
(acquirer, Kafka, object storage, e-mail) are wrapped with ``outside_transaction``, which
refuses to run while any database connection is inside an atomic block and raises
``ExternalCallInTransaction``. A retried function therefore cannot have talked to the
outside world: it would have failed on its first attempt, before any retry. Work that must
follow a commit goes into ``transaction.on_commit``; Django drops those callbacks when an
attempt rolls back, so they run once, for the attempt that committed.

Work that must happen *inside* the transaction but *last* goes through ``before_commit``:
the outermost ``atomic`` runs it after the function returns and before COMMIT. The audit
trail uses it to insert every audit entry of the transaction in one multi-row INSERT
(entries lock only themselves: no row is shared between objects).

The lock order
--------------
Every money transaction takes its row locks in this order, never another (two
transactions that take two rows in opposite orders deadlock; with the order fixed they
only queue):

1. **Transaction rows**: a payment before its children (refund, chargeback). A service
   locks the row it is about to change first (``transaction_fresh(..., lock=True)``,
   ``SELECT … FOR UPDATE``), then checks and compare-and-sets it.
2. **Tracked accounts** (``merchant_available``, the running balances), in ascending id,
   each by one ``UPDATE … WHERE balance >= amount``, *before* the journal lines that name
   them are inserted: the foreign-key check of a line insert takes a shared lock on the
   account row, and two shared locks both waiting to become exclusive deadlock.
Auditing takes no lock of its own: each audited row names its latest audit entry in the
same compare-and-set that changes it (``payflow.platform.trail``).

Inserted rows (journal entries and lines, outbox events, audit entries, acquirer
commands) lock only themselves. Other accounts (platform, pending, receivable) are only
ever share-locked by those foreign-key checks. Merchant rows are read without a lock
(the insert of a transaction row share-locks its merchant); a merchant change locks its
own row, nothing else. The idempotency record of an API request is
inserted by the request's first money transaction, just before its COMMIT, and updated
(the fence) just before the COMMIT of each later one, after every other row of that
transaction; it is that request's alone, so no other transaction waits for it while
holding a row it needs (a duplicate request waits on its key, holding nothing).
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import uuid_utils.compat
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from prometheus_client import Counter

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: MariaDB error codes after which the whole transaction is run again.
RETRYABLE_ERRORS = {
    1213: "deadlock_or_certification_failure",
    1205: "lock_wait_timeout",
}

TRANSACTION_RETRIES = Counter(
    "payflow_db_transaction_retries_total",
    "Transactions run again after a Galera certification failure, deadlock or lock wait timeout.",
    ["reason"],
)
# Every reason's series exists from the start (at 0), so a rate() alert sees the first retry.
for _reason in (*RETRYABLE_ERRORS.values(), "stale_cache"):
    TRANSACTION_RETRIES.labels(reason=_reason)
TRANSACTION_RETRIES_EXHAUSTED = Counter(
    "payflow_db_transaction_retries_exhausted_total",
    "Transactions that still conflicted after the last allowed attempt.",
)


class TransactionRetriesExhausted(Exception):
    """The transaction kept losing conflicts; nothing of it was committed."""

    def __init__(self, attempts: int, errno: int, message: str) -> None:
        self.attempts = attempts
        self.errno = errno
        super().__init__(
            f"transaction gave up after {attempts} attempts; last error {errno}: {message}"
        )


class StaleCache(Exception):
    """A row a process cache handed out is gone (``payflow.platform.caches``; e.g. the
    database was restored to an earlier point): the cache was emptied, and the whole
    transaction is run again with fresh reads."""


class ExternalCallInTransaction(RuntimeError):
    """A call to the outside world was made inside a database transaction."""


def mysql_errno(exc: BaseException) -> int | None:
    """The MariaDB error number carried by a database exception, if any."""
    for candidate in (exc, exc.__cause__):
        args = getattr(candidate, "args", ())
        if args and isinstance(args[0], int):
            return args[0]
    return None


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**attempt)]."""
    ceiling = min(settings.DB_RETRY_MAX_DELAY, settings.DB_RETRY_BASE_DELAY * 2**attempt)
    return random.uniform(0, ceiling)


def run_atomic(
    func: Callable[..., R],
    *args: Any,
    using: str | None = None,
    attempts: int | None = None,
    **kwargs: Any,
) -> R:
    """Run ``func`` in a transaction on ``using``; run it again if the commit lost a conflict.

    Nested inside another application transaction, ``func`` runs in a savepoint without
    retries: a conflict aborts the whole outer transaction, so only the outermost wrapper
    can retry. The outermost wrapper also runs the ``before_commit`` work, last.
    """
    alias = using or DEFAULT_DB_ALIAS
    connection = connections[alias]
    if _in_application_transaction(connection):
        with transaction.atomic(using=alias):
            return func(*args, **kwargs)
    if connection.in_atomic_block:
        # Only a test case's own blocks are open: a conflict would abort the test's
        # transaction too, so there is nothing to retry, but this is still the outermost
        # unit of work of the code under test.
        return _run_owning(connection, alias, func, args, kwargs)

    max_attempts = attempts or settings.DB_RETRY_ATTEMPTS
    for attempt in range(1, max_attempts + 1):
        try:
            return _run_owning(connection, alias, func, args, kwargs)
        except (OperationalError, StaleCache) as exc:
            errno = 0 if isinstance(exc, StaleCache) else mysql_errno(exc)
            if errno == 0:
                reason = "stale_cache"
            elif errno in RETRYABLE_ERRORS:
                reason = RETRYABLE_ERRORS[errno]
            else:
                raise
            if attempt == max_attempts:
                TRANSACTION_RETRIES_EXHAUSTED.inc()
                raise TransactionRetriesExhausted(attempt, errno or 0, str(exc)) from exc
            TRANSACTION_RETRIES.labels(reason=reason).inc()
            logger.info(
                "retrying %s after %s (attempt %d of %d)",
                getattr(func, "__qualname__", func),
                reason,
                attempt,
                max_attempts,
            )
            time.sleep(_backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


_OWNER = "_payflow_atomic_owner"


_ROLLBACK_HOOKS = "_payflow_on_rollback"


def _run_owning(connection: Any, alias: str, func: Callable[..., R], args: Any, kwargs: Any) -> R:
    """One attempt of the outermost unit of work: ``func``, then its ``before_commit`` work;
    if it does not commit, the ``on_rollback`` hooks."""
    setattr(connection, _ROLLBACK_HOOKS, [])
    try:
        with transaction.atomic(using=alias):
            setattr(connection, _OWNER, True)
            try:
                result = func(*args, **kwargs)
                _run_before_commit(connection)
            finally:
                setattr(connection, _OWNER, False)
            return result
    except BaseException:
        for hook in reversed(getattr(connection, _ROLLBACK_HOOKS, [])):
            hook()
        raise
    finally:
        setattr(connection, _ROLLBACK_HOOKS, [])


def on_rollback(hook: Callable[[], None], *, using: str | None = None) -> None:
    """Call ``hook`` if the current ``atomic`` attempt rolls back (before it is run again,
    or before its exception leaves ``atomic``): to undo in-memory state that stood for a
    row the attempt wrote. Refused outside ``payflow.platform.db.atomic``."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not getattr(connection, _OWNER, False):
        raise RuntimeError("on_rollback() needs a transaction opened by payflow.platform.db.atomic")
    getattr(connection, _ROLLBACK_HOOKS).append(hook)


class _BeforeCommit:
    """An item of ``before_commit`` work, kept in Django's on-commit list so that a
    savepoint rolled back drops it (Django's own bookkeeping); by the time Django would
    call it after the commit, ``_run_before_commit`` has taken it out."""

    __slots__ = ("flush", "item")

    def __init__(self, flush: Callable[[list[Any]], None], item: Any) -> None:
        self.flush, self.item = flush, item

    def __call__(self) -> None:  # pragma: no cover - removed before the commit
        raise AssertionError("before_commit work reached the commit hooks unflushed")


def before_commit(
    flush: Callable[[list[Any]], None], item: Any, *, using: str | None = None
) -> None:
    """Queue ``item`` for ``flush``: called once, inside the transaction, after the
    outermost ``atomic`` function returned and before COMMIT, with every item queued for
    it that a rolled-back savepoint did not discard, in the order they were queued.

    Refused (``RuntimeError``) outside ``payflow.platform.db.atomic``: nobody would run the work.
    """
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not getattr(connection, _OWNER, False):
        raise RuntimeError(
            "before_commit() needs a transaction opened by payflow.platform.db.atomic "
            "(a plain transaction.atomic() does not run the work)"
        )
    connection.on_commit(_BeforeCommit(flush, item))


def after_commit(
    flush: Callable[[list[Any]], None], item: Any, *, using: str | None = None
) -> None:
    """Queue ``item`` for ``flush``: called once, after COMMIT, with every item queued for
    it in the transaction that a rolled-back savepoint did not discard (one call per
    transaction however many changes queued work). Nothing is called if the transaction rolls back.

    Built on ``before_commit`` (which drops a rolled-back savepoint's items): just before
    COMMIT, once every other flush has run, the surviving items of each ``flush`` become one
    on-commit callback, at the place of its first item among the transaction's on-commit
    callbacks (so it runs as early as an ``on_commit`` made with that item would have).
    Refused outside ``payflow.platform.db.atomic``, like ``before_commit``.
    """
    before_commit(_AfterCommit(flush), item, using=using)


class _AfterCommit:
    """The ``flush`` of an ``after_commit`` item: set aside until every other flush ran."""

    __slots__ = ("target",)

    def __init__(self, target: Callable[[list[Any]], None]) -> None:
        self.target = target

    def __call__(self, items: list[Any]) -> None:  # pragma: no cover - never called
        raise AssertionError("after_commit work is turned into on-commit callbacks")


def _run_before_commit(connection: Any) -> None:
    # Flushes may queue more work (the audit rows' flush writes outbox rows, which queue a
    # nudge): loop until only after_commit work is left, then turn that into callbacks.
    while True:
        queued = [
            entry
            for entry in connection.run_on_commit
            if isinstance(entry[1], _BeforeCommit) and not isinstance(entry[1].flush, _AfterCommit)
        ]
        if not queued:
            _after_commit_callbacks(connection)
            return
        taken = {id(entry) for entry in queued}
        connection.run_on_commit = [
            entry for entry in connection.run_on_commit if id(entry) not in taken
        ]
        groups: dict[Callable[[list[Any]], None], list[Any]] = {}
        for _savepoints, work, _robust in queued:
            groups.setdefault(work.flush, []).append(work.item)
        for flush, items in groups.items():
            flush(items)


def _after_commit_callbacks(connection: Any) -> None:
    """Each flush's after_commit items become one callback where its first item was."""
    groups: dict[Callable[[list[Any]], None], list[Any]] = {}
    callbacks = []
    for savepoints, work, robust in connection.run_on_commit:
        if not isinstance(work, _BeforeCommit):
            callbacks.append((savepoints, work, robust))
            continue
        marker = work.flush
        if not isinstance(marker, _AfterCommit):  # the loop above flushed all the rest
            raise AssertionError("before_commit work reached the commit hooks unflushed")
        target = marker.target
        if target not in groups:
            groups[target] = []
            callbacks.append((savepoints, functools.partial(target, groups[target]), robust))
        groups[target].append(work.item)
    connection.run_on_commit = callbacks


@overload
def atomic(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def atomic(
    *, using: str | None = None, attempts: int | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def atomic(
    func: Callable[P, R] | None = None,
    /,
    *,
    using: str | None = None,
    attempts: int | None = None,
) -> Any:
    """Decorator: the function is one transaction, retried whole on 1213/1205.

    ``@atomic`` or ``@atomic(using="replica", attempts=3)``. It cannot be a context manager:
    a ``with`` body cannot be run a second time.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return run_atomic(fn, *args, using=using, attempts=attempts, **kwargs)

        return wrapper

    return decorate(func) if func is not None else decorate


def _in_application_transaction(connection: Any) -> bool:
    # A TestCase wraps each test in atomic blocks it marks ``_from_testcase``; they stand
    # for "no transaction" to the code under test, as Django's own ``durable`` check treats
    # them. In production no block carries the mark.
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def in_transaction() -> bool:
    """True when any open database connection of this thread is inside an atomic block."""
    return any(_in_application_transaction(conn) for conn in connections.all(initialized_only=True))


def outside_transaction(func: Callable[P, R]) -> Callable[P, R]:
    """Mark a call to the outside world: it refuses to run inside a database transaction."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if in_transaction():
            raise ExternalCallInTransaction(
                f"{func.__qualname__} calls the outside world and must not run inside a "
                "database transaction: call it before the transaction or after commit."
            )
        return func(*args, **kwargs)

    return wrapper


# --- UUIDv7 (RFC 9562) ----------------------------------------------------------------


def uuid7() -> uuid.UUID:
    """A time-ordered UUID version 7 (RFC 9562), monotonic within this process.

    Made by ``uuid_utils`` (Rust): 48 bits of Unix milliseconds, then a 42-bit counter
    (RFC 9562 method 1: seeded randomly each millisecond, incremented for ids made in the
    same millisecond), then 32 random bits; a standard ``uuid.UUID``. Our own function, not
    the library's, so that the models' ``default=`` and their migrations name this module
    and Python 3.14's ``uuid.uuid7`` can replace it here alone. See ``docs/libraries.md``.
    """
    return uuid_utils.compat.uuid7()


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The Unix time in milliseconds encoded in a UUIDv7."""
    return value.int >> 80
