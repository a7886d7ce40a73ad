"""Every beat job, run twice at the same time, has the effect of one run; every run is recorded."""

import datetime
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from audit.models import (
    ArchiveSegment,
    AuditEntry,
    Checkpoint,
    LogLeaf,
    RetentionPurge,
    VerificationRun,
)
from ledger.models import CardToken, JournalEntry, SimulatedOperation, Transaction
from ledger.models.vault import VaultKey
from ledger.services.merchants import merchant_create
from ledger.services.vault import card_tokenize
from outbox.models import EventStatus, OutboxEvent
from payflow.celery import app
from payflow.jobs import describe_schedule, job_name_for, job_run_record, scheduled_jobs
from payflow.models import IdempotencyRecord, JobRun
from payflow.platform import context
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import sequence
from tests.ledger.conftest import SimulatedCrash, crash_at, pay

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def run_twice_at_once(task, kwargs):
    """Two threads start ``task`` together (eager, in this process, with the task signals)."""
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            # contextvars do not cross threads: each run acts as beat would, a system task.
            with context.replaced(context.AuditContext(**context.system_actor("tests"))):
                barrier.wait(timeout=10)
                outcome = task.apply(kwargs=kwargs)
                results.append(outcome.get(propagate=False))
                if outcome.failed():
                    errors.append(outcome.traceback)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return results


@pytest.fixture
def work_for_every_job(kafka_settings, settings, tmp_path):
    """State on which every job has something to do, exactly once."""
    settings.KAFKA_TOPIC_PREFIX = f"jobs{uuid.uuid4().hex[:12]}."
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    settings.AUDIT_SEGMENT_MAX_ROWS = 100
    # audit entries from eight years ago, first in the log and sealed by a checkpoint:
    # archived, then purged at the end of retention
    years_ago = timezone.now() - datetime.timedelta(days=8 * 365)
    seed_chain(400, start=years_ago, end=years_ago + datetime.timedelta(days=30))
    sequence()
    from outbox import relay

    relay.reset_producer()
    merchant = merchant_create(name="Due Shop", settlement_delay_days=0)
    payments = [pay(merchant, amount=1000 + n) for n in range(3)]  # captured, due now
    # tokens under the older vault key, for the re-encryption job
    keys = dict(settings.VAULT_KEYS)
    settings.VAULT_KEYS = {1: keys[1]}
    old_tokens = [
        card_tokenize(merchant=merchant, number="4242424242424242", exp_month=1, exp_year=2035)
        for _ in range(2)
    ]
    settings.VAULT_KEYS = keys
    # published events past retention and idempotency records past theirs
    old = timezone.now() - datetime.timedelta(days=30)
    purgeable = list(OutboxEvent.objects.filter(aggregate_id=str(payments[0].pk)))
    OutboxEvent.objects.filter(pk__in=[e.pk for e in purgeable]).update(
        status=EventStatus.PUBLISHED, published_at=old
    )
    for key in ("a", "b"):
        record = IdempotencyRecord.objects.create(
            merchant_id=merchant.pk, key=key, method="POST", path="/v1/payments",
            request_hash="x", locked_until=old,
        )  # fmt: skip
        IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=old)
    # a payment whose process died during the acquirer call: the acquirer authorized it,
    # the payment is still initiated, for the recovery job (due at once: aging the row with
    # an UPDATE behind the services would be a change the audit log does not record, and
    # the verification jobs would rightly report it)
    with crash_at("acquirer.authorize"), pytest.raises(SimulatedCrash):
        pay(merchant, amount=777)
    in_flight = Transaction.objects.get(status="initiated")
    settings.PAYMENT_RECOVERY_AFTER_SECONDS = 0
    yield {
        "payments": payments,
        "old_tokens": old_tokens,
        "purged_events": len(purgeable),
        "in_flight": in_flight,
    }
    relay.reset_producer()


def test_every_beat_job_run_twice_at_once_has_the_effect_of_one_run(work_for_every_job):
    app.loader.import_default_modules()
    payments = work_for_every_job["payments"]
    ran = []

    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        # the sequencer (its own process, not a beat job) keeps the log sealed meanwhile
        sequence()
        log = (LogLeaf.objects.count(), Checkpoint.objects.count())
        run_twice_at_once(app.tasks[entry["task"]], entry.get("kwargs") or {})
        ran.append(name)
        # no job appends to the log or signs it: only the sequencer does
        assert (LogLeaf.objects.count(), Checkpoint.objects.count()) == log, name

    # recovery: the in-flight payment resolved once, by inquiry (one authorization at the
    # acquirer, one capture entry), then settled by the settlement job that runs after it
    recovered = Transaction.objects.get(pk=work_for_every_job["in_flight"].pk)
    assert (recovered.status, recovered.version) == ("settled", 4)
    assert JournalEntry.objects.filter(transaction=recovered, kind="capture").count() == 1
    assert SimulatedOperation.objects.filter(authorization=str(recovered.pk)).count() == 1
    # settlement: each due payment settled once, one settlement entry each
    for payment in payments:
        assert Transaction.objects.get(pk=payment.pk).status == "settled"
        assert JournalEntry.objects.filter(transaction=payment, kind="settlement").count() == 1
    # outbox purge and idempotency purge: the old rows gone, nothing else
    assert not OutboxEvent.objects.filter(aggregate_id=str(payments[0].pk), published_at__lt=(
        timezone.now() - datetime.timedelta(days=1))).exists()  # fmt: skip
    assert IdempotencyRecord.objects.count() == 0
    # vault: each old token re-encrypted once (one audit entry each), each key version seen once
    for token in work_for_every_job["old_tokens"]:
        assert CardToken.objects.get(pk=token.pk).key_version == 2
        assert AuditEntry.objects.filter(
            object_id=str(token.pk), event_type="card_token.reencrypted"
        ).count() == 1  # fmt: skip
    assert sorted(VaultKey.objects.values_list("version", flat=True)) == [1, 2]
    # archive: the 400 old entries (leaves 0..399) in segments once each; retention: those
    # segments purged once, recorded by one entry of the log
    segments = list(ArchiveSegment.objects.order_by("first_index"))
    assert sum(segment.row_count for segment in segments) == 400
    assert (segments[0].first_index, segments[-1].last_index) == (0, 399)
    assert all(segment.purged_at for segment in segments)
    [purge] = RetentionPurge.objects.all()
    assert (purge.first_index, purge.last_index, purge.row_count) == (0, 399, 400)
    assert AuditEntry.objects.filter(event_type="audit.retention_purged").count() == 1
    # verification and invariants: read-only, both runs recorded and OK
    assert VerificationRun.objects.filter(ok=True).count() == 4
    assert VerificationRun.objects.exclude(ok=True).count() == 0
    # every run recorded: two runs of each job, none failed
    runs = {run.job: run for run in JobRun.objects.all()}
    assert sorted(runs) == sorted(ran)
    for name in ran:
        assert (runs[name].runs, runs[name].failures, runs[name].last_status) == (2, 0, "ok")
        assert 0 < runs[name].last_duration_seconds < 60
    assert runs["ledger-invariants"].last_result["ok"] is True
    # (how the two overlapping runs split the due payments varies; that each was settled
    # exactly once is asserted above) the run records the settlement report
    assert set(runs["settlement"].last_result) == {
        "payments_settled", "payouts_settled", "skipped",
    }  # fmt: skip


def test_a_failed_run_is_recorded_with_its_error(transactional_db):
    started = timezone.now()
    job_run_record(job="settlement", task="ledger.settlement_run", started_at=started,
                   duration_seconds=0.5, ok=True, result={"payments_settled": 2})  # fmt: skip
    job_run_record(job="settlement", task="ledger.settlement_run", started_at=started,
                   duration_seconds=0.25, ok=False, error="OperationalError: gone")  # fmt: skip
    run = JobRun.objects.get(job="settlement")
    assert (run.runs, run.failures, run.last_status) == (2, 1, "failed")
    assert run.last_error == "OperationalError: gone"
    assert run.last_success_at is not None
    assert run.last_result is None


def test_the_registry_names_the_entry_of_a_task_by_its_arguments():
    assert job_name_for("audit.verify", {"incremental": True}) == "audit-verify-incremental"
    assert job_name_for("audit.verify", {}) == "audit-verify-full"
    assert job_name_for("audit.verify", {"incremental": False}) == "audit-verify-full"
    assert job_name_for("outbox.relay_partition", {"partition": 1}) is None
    assert describe_schedule(300.0) == "every 300 s"
    assert describe_schedule(settings.CELERY_BEAT_SCHEDULE["settlement"]["schedule"]) == (
        "cron 0 2 * * * (UTC)"
    )


def test_the_schedule_lists_both_archiving_jobs_of_issue_7(transactional_db):
    jobs = {job.name: job for job in scheduled_jobs()}
    assert jobs["audit-archive"].task == "audit.archive"
    assert jobs["audit-retention-purge"].task == "audit.retention_purge"
    assert set(jobs) == set(settings.CELERY_BEAT_SCHEDULE)


def beat_sends(job):
    """Queue ``job`` exactly as beat does: the entry's task, kwargs and options (which carry
    the ``payflow_job`` header), with no actor."""
    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE[job]
    with context.replaced(context.AuditContext()):
        return app.tasks[entry["task"]].apply_async(
            kwargs=entry.get("kwargs") or {}, **entry.get("options", {})
        )


@pytest.mark.celery_worker
def test_a_paused_job_skips_beats_runs_in_the_real_worker_until_resumed(celery_worker_process):
    from payflow.jobs import job_pause, job_resume

    merchant = merchant_create(name="Paused settlement", settlement_delay_days=0)
    payment = pay(merchant)
    with context.replaced(context.AuditContext(**context.system_actor("tests"))):
        job_pause(job="settlement", by="olivia", reason="bank holiday")

    assert beat_sends("settlement").get(timeout=60) == "paused"
    assert Transaction.objects.get(pk=payment.pk).status == "captured"

    job_resume(job="settlement")
    assert beat_sends("settlement").get(timeout=60)["payments_settled"] == 1
    assert Transaction.objects.get(pk=payment.pk).status == "settled"
    # The worker records a run after storing its result: wait for the record. Exactly one
    # run: the skipped one was never recorded.
    deadline = time.monotonic() + 30
    while JobRun.objects.get(job="settlement").runs == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    run = JobRun.objects.get(job="settlement")
    assert (run.runs, run.last_status, run.paused_at) == (1, "ok", None)


@pytest.mark.celery_worker
def test_pausing_a_job_leaves_runs_not_started_by_beat_alone(celery_worker_process):
    from ledger.tasks import settlement_run
    from payflow.jobs import job_pause

    merchant = merchant_create(name="Operator settlement", settlement_delay_days=0)
    pay(merchant)
    job_pause(job="settlement", by="olivia", reason="only by hand today")
    with context.replaced(context.AuditContext(**context.system_actor("night-operator"))):
        assert settlement_run.delay().get(timeout=60)["payments_settled"] == 1


def test_every_beat_entry_names_its_job_in_a_header():
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["headers"] == {"payflow_job": name}


def test_pausing_is_refused_for_an_unknown_job_or_twice(transactional_db):
    from payflow.jobs import JobPauseRefused, job_pause, job_resume

    with pytest.raises(JobPauseRefused, match="no scheduled job"):
        job_pause(job="nope", by="olivia", reason="x")
    with pytest.raises(JobPauseRefused, match="not paused"):
        job_resume(job="outbox-purge")
    job_pause(job="outbox-purge", by="olivia", reason="x")
    with pytest.raises(JobPauseRefused, match="already paused"):
        job_pause(job="outbox-purge", by="omar", reason="y")
    assert JobRun.objects.get(job="outbox-purge").paused_by == "olivia"
