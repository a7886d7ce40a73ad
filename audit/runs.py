"""Verification runs: one verification of the log, queued for the worker or run by beat,
its progress stored as it goes and its result (every break, by kind and object) kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import VerificationRun
from audit.verify import verify_log


def verification_start(
    *, started_by: str, queue: Callable[[int], Any], incremental: bool = False
) -> VerificationRun:
    """Record a verification run and, after commit, ``queue(run.id)``: the caller passes the
    task's ``delay`` (``audit.tasks.verification_run``, which calls this module, so this
    module cannot import it), queued in the caller's audit context."""
    run = VerificationRun.objects.create(started_by=started_by[:200], incremental=incremental)
    transaction.on_commit(lambda: queue(run.id))
    return run


def incremental_start() -> int:
    """Where an incremental run starts: the checkpoint size the last OK run verified."""
    last = (
        VerificationRun.objects.filter(ok=True, checkpoint_size__isnull=False)
        .order_by("-id")
        .values_list("checkpoint_size", flat=True)
        .first()
    )
    return last or 0


def verification_execute(*, run_id: int) -> Any:
    """Verify the log (in full, with reconciliation, or from the last verified checkpoint),
    saving progress every chunk (small autocommit updates, so an auditor watching sees it
    move). An OK run records the checkpoint size it covered, where the next incremental run
    starts."""
    run = VerificationRun.objects.get(pk=run_id)
    start = incremental_start() if run.incremental else 0
    VerificationRun.objects.filter(pk=run_id).update(status=VerificationRun.RUNNING)

    def progress(done: int, total: int) -> None:
        VerificationRun.objects.filter(pk=run_id).update(done=done, total=total, rows=done)

    try:
        report = verify_log(start=start, progress=progress)
    except Exception as exc:
        VerificationRun.objects.filter(pk=run_id).update(
            status=VerificationRun.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        raise
    VerificationRun.objects.filter(pk=run_id).update(
        status=VerificationRun.DONE,
        ok=report.ok,
        rows=report.entries,
        done=report.size,
        total=report.size,
        finished_at=timezone.now(),
        checkpoint_size=report.checkpoint_size if report.ok else None,
        breaks=report.breaks_as_dicts(),
    )
    return VerificationRun.objects.get(pk=run_id)
