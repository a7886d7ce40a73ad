"""Thin Celery tasks of the audit trail."""

from __future__ import annotations

import logging

from celery import shared_task

from audit.archive import audit_archive
from audit.models import VerificationRun
from audit.retention import audit_retention_purge
from audit.runs import verification_execute

logger = logging.getLogger(__name__)


@shared_task(name="audit.verify")
def verify(incremental: bool = False) -> dict:
    """Verify the trail, recorded as a run (beat: incremental hourly, in full nightly)."""
    run = VerificationRun.objects.create(started_by="beat", incremental=incremental)
    run = verification_execute(run_id=run.id)
    for broken in run.breaks:
        logger.error("audit log broken: %s", broken)
    return {"ok": run.ok, "rows": run.rows, "breaks": run.breaks}


@shared_task(name="audit.verification_run")
def verification_run(run_id: int) -> dict:
    """Run a verification an auditor started, storing progress as it goes."""
    run = verification_execute(run_id=run_id)
    return {"run": run.id, "ok": run.ok, "rows": run.rows}


@shared_task(name="audit.archive")
def archive() -> dict:
    """Move rows older than AUDIT_ARCHIVE_AFTER to verified segment files (beat, daily)."""
    return audit_archive().as_dict()


@shared_task(name="audit.retention_purge")
def retention_purge() -> dict:
    """Purge segments older than AUDIT_RETENTION, recorded in the log (beat, daily)."""
    return audit_retention_purge().as_dict()
