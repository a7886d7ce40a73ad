"""Thin Celery tasks of the audit trail."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="audit.checkpoint")
def checkpoint() -> dict:
    """Sign a checkpoint of every lane (beat, every 5 minutes)."""
    from audit.checkpoints import audit_checkpoint_create

    written = audit_checkpoint_create()
    return {"number": written.number if written else None}


@shared_task(name="audit.verify")
def verify() -> dict:
    """Verify every lane against the chain and the signed checkpoints (beat, nightly)."""
    import logging

    from audit.verify import verify_all

    report = verify_all()
    for lane in report.breaks:
        logging.getLogger(__name__).error(
            "audit chain broken in lane %s at seq %s: %s",
            lane.lane,
            lane.break_seq,
            lane.break_kind,
        )
    return {
        "ok": report.ok,
        "rows": report.rows,
        "breaks": [(b.lane, b.break_seq, b.break_kind) for b in report.breaks],
    }


@shared_task(name="audit.verification_run")
def verification_run(run_id: int) -> dict:
    """Run a verification an auditor started, storing progress after every lane."""
    from audit.services import verification_execute

    run = verification_execute(run_id=run_id)
    return {"run": run.id, "ok": run.ok, "rows": run.rows}
