"""A beat job whose message reaches the real Celery worker twice (a redelivery: the same
task id, as after a worker lost its acknowledgement) has the effect of one run.

``test_jobs.py`` runs every job twice at once with ``task.apply()`` in threads of this
process; here the messages go through Redis to the worker process, as beat's do.
"""

from __future__ import annotations

import datetime
import time
import uuid

import pytest
from django.conf import settings
from django.utils import timezone

from ledger.models import JournalEntry, SimulatedOperation, Transaction
from ledger.services.merchants import merchant_create
from payflow.celery import app
from payflow.models import JobRun
from payflow.platform.guards import sanctioned_writes
from tests.ledger.conftest import SimulatedCrash, crash_at, pay

pytestmark = pytest.mark.django_db(transaction=True)


def deliver_twice(job: str) -> None:
    """Send beat's message for ``job`` twice with one task id, with beat's headers."""
    entry = settings.CELERY_BEAT_SCHEDULE[job]
    task_id = str(uuid.uuid4())
    for _ in range(2):
        app.send_task(
            entry["task"],
            kwargs=entry.get("kwargs") or {},
            task_id=task_id,
            headers=entry["options"]["headers"],
        )


def wait_for_runs(job: str, runs: int, seconds: float = 60) -> JobRun:
    deadline = time.monotonic() + seconds
    while True:
        record = JobRun.objects.filter(job=job).first()
        if record is not None and record.runs >= runs:
            return record
        if time.monotonic() > deadline:
            pytest.fail(
                f"the worker recorded {record.runs if record else 0} of {runs} runs of {job} "
                f"within {seconds:.0f}s"
            )
        time.sleep(0.2)


def test_recovery_and_settlement_delivered_twice_to_the_worker_act_once(celery_worker_process):
    merchant = merchant_create(name="delivered-twice", settlement_delay_days=0)
    captured = [pay(merchant, amount=1_000 + i) for i in range(3)]
    with crash_at("acquirer.authorize"), pytest.raises(SimulatedCrash):
        pay(merchant, amount=777)
    in_flight = Transaction.objects.get(status="initiated")
    old = timezone.now() - datetime.timedelta(hours=1)
    with sanctioned_writes():
        Transaction.objects.filter(pk=in_flight.pk).update(initiated_at=old)

    deliver_twice("recover-in-flight")
    recovery = wait_for_runs("recover-in-flight", 2)
    deliver_twice("settlement")
    settlement = wait_for_runs("settlement", 2)

    for record in (recovery, settlement):
        assert (record.runs, record.failures, record.last_status) == (2, 0, "ok")
    # the in-flight payment captured once, by inquiry: one authorization, one capture entry
    recovered = Transaction.objects.get(pk=in_flight.pk)
    assert recovered.status == "settled"
    assert SimulatedOperation.objects.filter(authorization=str(recovered.pk)).count() == 1
    assert JournalEntry.objects.filter(transaction=recovered, kind="capture").count() == 1
    # every due payment settled once: one settlement entry each
    for payment in [*captured, recovered]:
        assert Transaction.objects.get(pk=payment.pk).status == "settled"
        assert JournalEntry.objects.filter(transaction=payment, kind="settlement").count() == 1
