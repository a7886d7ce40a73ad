"""Per-process caches of the request path (issue 17): what every request would otherwise
read again, kept in this process's memory for a bounded time.

A ``ProcessCache`` maps a key to a value for at most ``ttl`` seconds (``None``: for the
life of the process, for values that never change, such as an account's id). Each entry
carries *tags* — ``(model label, primary key)`` of the rows it was read from — and
``forget(label, pk)`` drops every entry of every cache tagged with that row. The ledger
calls ``forget`` for each audited change, at once and again after the commit, so a change
made in this process takes effect for its next request; a change made by another process
takes effect here when the entry expires: within ``ttl`` seconds, the documented bound
(``API_CACHE_SECONDS``).

Only committed rows may be cached: ``put_after_commit`` defers the insertion to the commit
of the current transaction (nothing is cached if it rolls back).

Values are shared between the threads of a process: callers hand out copies when the
value is a mutable model instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from django.db import connection, transaction

Tag = tuple[str, Any]

_caches: list[ProcessCache] = []


class ProcessCache:
    """A bounded, thread-safe key → value map with expiry and tag invalidation."""

    def __init__(
        self, name: str, *, ttl: Callable[[], float] | None, max_entries: int = 10_000
    ) -> None:
        self.name = name
        self._ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any, tuple[Tag, ...]]] = {}
        _caches.append(self)

    def get(self, key: Hashable) -> Any | None:
        if self._ttl is not None and self._ttl() <= 0:
            return None  # caching switched off
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value, _tags = found
        if expires < time.monotonic():
            with self._lock:
                self._entries.pop(key, None)
            return None
        return value

    def put(self, key: Hashable, value: Any, *, tags: Iterable[Tag] = ()) -> None:
        ttl = None if self._ttl is None else self._ttl()
        if ttl is not None and ttl <= 0:
            return  # caching switched off
        expires = float("inf") if ttl is None else time.monotonic() + ttl
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()  # rare: a flood of distinct keys; start again
            self._entries[key] = (expires, value, tuple(tags))

    def put_after_commit(self, key: Hashable, value: Any, *, tags: Iterable[Tag] = ()) -> None:
        """``put`` once the current transaction has committed (at once outside one)."""
        tags = tuple(tags)
        if connection.in_atomic_block:
            transaction.on_commit(lambda: self.put(key, value, tags=tags))
        else:
            self.put(key, value, tags=tags)

    def forget_tag(self, tag: Tag) -> None:
        with self._lock:
            for key in [key for key, (_e, _v, tags) in self._entries.items() if tag in tags]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def forget(label: str, pk: Any) -> None:
    """Drop every cached entry read from the row ``(label, pk)``, in every cache."""
    tag = (label, str(pk))
    for cache in _caches:
        cache.forget_tag(tag)


def tag(label: str, pk: Any) -> Tag:
    return (label, str(pk))


def clear_all() -> None:
    """Empty every cache of the process (tests, after the database was emptied)."""
    for cache in _caches:
        cache.clear()
