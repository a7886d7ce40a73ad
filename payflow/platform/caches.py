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
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from django.db import connection, transaction

Tag = tuple[str, Any]

_caches: list[ProcessCache] = []

# Every ``forget`` gets a number; the recent ones are remembered, so that a value read
# before a forget and put after it is refused (``put(..., since=epoch())``).
_forgets_lock = threading.Lock()
_forget_number = 0
_recent_forgets: deque[tuple[int, Tag]] = deque(maxlen=8192)
#: The labels any entry was ever tagged with: a change of a row of another table (a
#: payment, a journal entry: most changes) forgets nothing and costs nothing.
_tagged_labels: set[str] = set()


def epoch() -> int:
    """The number of the latest ``forget``: take it before reading what will be cached."""
    return _forget_number


def _forgotten_since(since: int, tags: tuple[Tag, ...]) -> bool:
    with _forgets_lock:
        if since == _forget_number:
            return False
        if not _recent_forgets or _recent_forgets[0][0] > since + 1:
            return True  # more forgets than remembered since then: assume the worst
        for number, tag in reversed(_recent_forgets):
            if number <= since:
                return False
            if tag in tags:
                return True
        return False


class ProcessCache:
    """A bounded, thread-safe key → value map with expiry and tag invalidation."""

    def __init__(
        self,
        name: str,
        *,
        ttl: Callable[[], float] | None,
        labels: Iterable[str] = (),
        max_entries: int = 10_000,
    ) -> None:
        """``labels``: the tables its entries are read from (their changes are tracked from
        the start, so a change racing the first read is seen too)."""
        self.name = name
        _tagged_labels.update(labels)
        self._ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any, tuple[Tag, ...]]] = {}
        self._by_tag: dict[Tag, set[Hashable]] = {}
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
                self._drop(key)
            return None
        return value

    def put(
        self, key: Hashable, value: Any, *, tags: Iterable[Tag] = (), since: int | None = None
    ) -> None:
        """Cache ``value`` (read from the rows ``tags``). ``since``: the ``epoch()`` taken
        before the read; if one of those rows was forgotten since, nothing is cached (the
        value may be older than the change)."""
        ttl = None if self._ttl is None else self._ttl()
        if ttl is not None and ttl <= 0:
            return  # caching switched off
        tags = tuple(tags)
        if since is not None and _forgotten_since(since, tags):
            return
        expires = float("inf") if ttl is None else time.monotonic() + ttl
        _tagged_labels.update(label for label, _pk in tags)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()  # rare: a flood of distinct keys; start again
                self._by_tag.clear()
            self._drop(key)
            self._entries[key] = (expires, value, tags)
            for tag in tags:
                self._by_tag.setdefault(tag, set()).add(key)

    def put_after_commit(
        self, key: Hashable, value: Any, *, tags: Iterable[Tag] = (), since: int | None = None
    ) -> None:
        """``put`` once the current transaction has committed (at once outside one)."""
        tags = tuple(tags)
        if connection.in_atomic_block:
            transaction.on_commit(lambda: self.put(key, value, tags=tags, since=since))
        else:
            self.put(key, value, tags=tags, since=since)

    def forget_tag(self, tag: Tag) -> None:
        with self._lock:
            for key in self._by_tag.pop(tag, ()):
                self._drop(key)

    def _drop(self, key: Hashable) -> None:  # with the lock held
        found = self._entries.pop(key, None)
        if found is None:
            return
        for tag in found[2]:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_tag.clear()


def forget(label: str, pk: Any) -> None:
    """Drop every cached entry read from the row ``(label, pk)``, in every cache (one
    look-up per cache: entries are indexed by their tags)."""
    global _forget_number
    if label not in _tagged_labels:
        return
    tag = (label, str(pk))
    with _forgets_lock:
        _forget_number += 1
        _recent_forgets.append((_forget_number, tag))
    for cache in _caches:
        cache.forget_tag(tag)


def tag(label: str, pk: Any) -> Tag:
    return (label, str(pk))


def clear_all() -> None:
    """Empty every cache of the process (tests, after the database was emptied)."""
    for cache in _caches:
        cache.clear()
