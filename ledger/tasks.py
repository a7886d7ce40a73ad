"""Celery tasks of the ledger: thin wrappers that call one service each."""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from celery import shared_task

from ledger.selectors import ledger_check_invariants
from ledger.services import settlement
from ledger.services.recovery import in_flight_recover
from ledger.services.vault import vault_keys_register, vault_reencrypt_batch, vault_rotation_status

logger = logging.getLogger(__name__)


@shared_task(name="ledger.vault_reencrypt")
def vault_reencrypt(batch_size: int = 200, time_budget_seconds: int = 240) -> dict[str, Any]:
    """Re-encrypt tokens on older vault keys, batch after batch, until none is left or the
    time budget is spent (the next run picks up what is left; each batch is committed).
    """
    deadline = time.monotonic() + time_budget_seconds
    totals = {"batches": 0, "reencrypted": 0, "skipped": 0, "failed": 0}
    after = None
    finished = False
    while time.monotonic() < deadline:
        batch = vault_reencrypt_batch(batch_size=batch_size, after=after)
        if batch.last_id is None:
            finished = True
            break
        after = batch.last_id
        totals["batches"] += 1
        totals["reencrypted"] += batch.reencrypted
        totals["skipped"] += batch.skipped
        totals["failed"] += batch.failed
    logger.info(
        "vault re-encryption: %(reencrypted)d re-encrypted, %(skipped)d skipped, "
        "%(failed)d failed in %(batches)d batches",
        totals,
    )
    return {**totals, "finished": finished}


@shared_task(name="ledger.vault_rotation_check")
def vault_rotation_check() -> dict[str, Any]:
    """Record new key versions, then report the rotation status (and warn when due)."""
    vault_keys_register()
    status = vault_rotation_status()
    if status.missing_key_versions or status.changed_key_versions:
        logger.error(
            "vault keyring problem: tokens on versions %s have no key; versions %s changed",
            status.missing_key_versions,
            status.changed_key_versions,
        )
    if status.rotation_due:
        logger.warning(
            "vault key version %d is %d days old (rotation every %d days): add a new version",
            status.current_key_version,
            status.current_key_age_days,
            status.rotation_days,
        )
    if status.tokens_not_on_current_key:
        logger.info(
            "%d card tokens are not yet on vault key version %d",
            status.tokens_not_on_current_key,
            status.current_key_version,
        )
    return status.as_dict()


@shared_task(name="ledger.settlement_run")
def settlement_run() -> dict[str, Any]:
    """Settle what is due (each payment and payout its own transaction; safe to overlap)."""
    report = settlement.settlement_run()
    return {
        "payments_settled": report.payments_settled,
        "payouts_settled": report.payouts_settled,
        "skipped": report.skipped,
    }


@shared_task(name="ledger.check_invariants")
def check_invariants() -> dict[str, Any]:
    """The nightly ledger check (read-only); problems are logged as errors and returned."""
    report = ledger_check_invariants()
    for problem in report.problems:
        logger.error("ledger invariant broken: %s", problem)
    return {"ok": report.ok, "entries": report.entries, "problems": report.problems[:50]}


@shared_task(name="ledger.recover_in_flight")
def recover_in_flight(older_than_seconds: int | None = None) -> dict[str, Any]:
    """Resolve payments left initiated and acquirer commands left pending, by inquiry."""
    older_than = (
        None if older_than_seconds is None else datetime.timedelta(seconds=older_than_seconds)
    )
    return in_flight_recover(older_than=older_than).as_dict()
