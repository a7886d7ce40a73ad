"""Verification runs: one verification of the trail, queued for the worker or run by beat,
its progress stored as it goes and its result (the first break per lane) kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditCheckpoint, VerificationRun
from audit.verify import incremental_starts, verify_all


def verification_start(
    *, started_by: str, queue: Callable[[int], Any], incremental: bool = False
) -> VerificationRun:
    """Record a verification run and, after commit, ``queue(run.id)``: the caller passes the
    task's ``delay`` (``audit.tasks.verification_run``, which calls this module, so this
    module cannot import it), queued in the caller's audit context."""
    run = VerificationRun.objects.create(
        started_by=started_by[:200], lanes_total=settings.AUDIT_LANES, incremental=incremental
    )
    transaction.on_commit(lambda: queue(run.id))
    return run


def verification_execute(*, run_id: int) -> Any:
    """Verify every lane (in full, or from the last verified checkpoint), saving progress
    after each lane (small autocommit updates, so an auditor watching sees it move). An OK
    run records the newest checkpoint it covered, where the next incremental run starts."""
    run = VerificationRun.objects.get(pk=run_id)
    latest = AuditCheckpoint.objects.order_by("-number").values_list("number", flat=True).first()
    starts, _ = incremental_starts() if run.incremental else ({}, None)
    VerificationRun.objects.filter(pk=run_id).update(status=VerificationRun.RUNNING)
    state = {"rows": 0, "done": 0}

    def progress(lane, result):
        state["rows"] += result.rows
        state["done"] += 1
        VerificationRun.objects.filter(pk=run_id).update(
            lanes_done=state["done"], rows=state["rows"]
        )

    try:
        report = verify_all(progress=progress, starts=starts)
    except Exception as exc:
        VerificationRun.objects.filter(pk=run_id).update(
            status=VerificationRun.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        raise
    VerificationRun.objects.filter(pk=run_id).update(
        status=VerificationRun.DONE,
        ok=report.ok,
        rows=report.rows,
        finished_at=timezone.now(),
        checkpoint_number=latest if report.ok else None,
        breaks=[
            {"lane": b.lane, "seq": b.break_seq, "kind": b.break_kind, "detail": b.detail}
            for b in report.breaks
        ],
    )
    return VerificationRun.objects.get(pk=run_id)
