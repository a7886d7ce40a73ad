"""Named fault points in the money paths, for the crash tests (off in production).

``point("payment.intent_committed")`` marks a place where a crash matters: right after a
step committed, or while the acquirer holds a request. Two things can happen there:

- **Crash injection** (``FAULT_INJECTION=True`` only): a request carrying the header
  ``X-PayFlow-Fault: <point>`` makes its process ``SIGKILL`` itself when it reaches that
  point — a real kill -9, no cleanup, no rollback but the database's own. The kill -9
  suite (``tests/faults``) drives a real gunicorn this way. ``manage.py check --deploy``
  fails while it is on.
- **In-process hooks** (tests only): ``hooked(point, callback)`` runs ``callback`` when a
  thread of this process reaches the point, e.g. to hold a request there while another
  one takes its Idempotency-Key over.

With neither, ``point`` returns at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings

HEADER = "X-PayFlow-Fault"

_requested: contextvars.ContextVar[str] = contextvars.ContextVar("fault_requested", default="")
_hooks: dict[str, list[Callable[[], None]]] = {}


def point(name: str) -> None:
    """A fault point: crash here if this request asked for it; run the tests' hooks."""
    if _hooks:
        for callback in list(_hooks.get(name, ())):
            callback()
    if _requested.get() == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def requested(name: str) -> Iterator[None]:
    """Crash at ``name`` within the block (the middleware binds a request's header)."""
    token = _requested.set(name if settings.FAULT_INJECTION else "")
    try:
        yield
    finally:
        _requested.reset(token)


@contextlib.contextmanager
def hooked(name: str, callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` whenever any thread reaches ``name``, within the block (tests)."""
    _hooks.setdefault(name, []).append(callback)
    try:
        yield
    finally:
        _hooks[name].remove(callback)
        if not _hooks[name]:
            del _hooks[name]


class FaultInjectionMiddleware:
    """Binds ``X-PayFlow-Fault`` for the request when ``FAULT_INJECTION`` is on."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if not settings.FAULT_INJECTION:
            return self.get_response(request)
        with requested(request.headers.get(HEADER, "")):
            return self.get_response(request)
