"""Waits that end on an event, each with a deadline and a message naming what never
happened (instead of hanging until pytest's 600 s timeout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import pytest


def join_all(threads: Iterable[threading.Thread], seconds: float, what: str) -> None:
    """Join every thread within ``seconds`` in all, or fail naming ``what`` still ran."""
    deadline = time.monotonic() + seconds
    threads = list(threads)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = sum(thread.is_alive() for thread in threads)
    if alive:
        pytest.fail(f"{alive} of {len(threads)} {what} still running after {seconds:.0f}s")


def drain_outbox(seconds: float = 60) -> None:
    """Relay until no outbox event is pending, or fail with how many never left and why."""
    from outbox import relay
    from outbox.models import EventStatus, OutboxEvent

    deadline = time.monotonic() + seconds
    while OutboxEvent.objects.filter(status=EventStatus.PENDING).exists():
        if time.monotonic() > deadline:
            pending = OutboxEvent.objects.filter(status=EventStatus.PENDING)
            errors = sorted(set(pending.values_list("last_error", flat=True)))[:3]
            pytest.fail(
                f"{pending.count()} outbox events still pending after {seconds:.0f}s "
                f"(last errors: {errors})"
            )
        relay.relay_all(time_budget=min(30.0, max(1.0, deadline - time.monotonic())))
