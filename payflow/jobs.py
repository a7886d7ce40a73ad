"""The scheduled jobs (DESIGN.md section 9): one registry, and the record of every run.

The schedule itself is ``settings.CELERY_BEAT_SCHEDULE`` (reviewed with the code, read by
the one beat process). ``scheduled_jobs()`` lists it for operators, with each job's latest
``JobRun``. Every run of a task that the schedule names is recorded by Celery's
``task_prerun`` / ``task_postrun`` signals, whoever started it (beat, an operator, a test):
start, duration, result or error, in a small transaction of its own after the task ran.

An operator can pause a job (``job_pause``, from the admin): beat keeps firing it, and each
of beat's runs (marked by the ``payflow_job`` header the schedule adds) returns at once
without doing anything and without being recorded, until the job is resumed.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import signals
from celery.schedules import maybe_schedule
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from payflow import celery as payflow_celery
from payflow.models import JobRun, JobRunRecord
from payflow.platform import context, db

logger = logging.getLogger(__name__)

RESULT_MAX_CHARS = 2000


#: Runs of each job kept for the jobs page (``JobRunRecord``).
JOB_HISTORY = 20


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    task: str
    every: str
    kwargs: dict[str, Any]
    last_run: JobRun | None
    next_run: datetime.datetime | None = None  # when beat fires it next (None: paused)
    recent: tuple[JobRunRecord, ...] = ()  # its last runs, newest first


def next_run(schedule: Any, last_started: datetime.datetime | None) -> datetime.datetime:
    """When beat next fires an entry of ``schedule``, counted from its last recorded start
    (from now when it never ran): beat's own bookkeeping lives in its process, so this is
    an estimate, exact for crontabs and within one interval for intervals."""
    now = timezone.now()
    remaining = maybe_schedule(schedule).remaining_estimate(last_started or now)
    moment = max(now, now + remaining) + datetime.timedelta(microseconds=500_000)
    return moment.replace(microsecond=0)  # to the second (crontabs land on .999…)


def describe_schedule(schedule: Any) -> str:
    """A human description of a beat schedule: "every 5 s", or the crontab fields."""
    if isinstance(schedule, int | float):
        return f"every {schedule:g} s"
    if isinstance(schedule, datetime.timedelta):
        return f"every {schedule.total_seconds():g} s"
    fields = ("_orig_minute", "_orig_hour", "_orig_day_of_month", "_orig_month_of_year")
    if all(hasattr(schedule, name) for name in fields):
        minute, hour, day, month = (getattr(schedule, name) for name in fields)
        weekday = getattr(schedule, "_orig_day_of_week", "*")
        return f"cron {minute} {hour} {day} {month} {weekday} (UTC)"
    return str(schedule)


def scheduled_jobs(*, with_history: bool = False) -> list[ScheduledJob]:
    """Every beat entry, in schedule order, with its latest recorded run (or None), when
    beat fires it next, and (``with_history``) its last ``JOB_HISTORY`` runs."""
    runs = {run.job: run for run in JobRun.objects.all()}
    recent: dict[str, list[JobRunRecord]] = {}
    if with_history:
        for record in JobRunRecord.objects.order_by("-id")[: JOB_HISTORY * 50]:
            kept = recent.setdefault(record.job, [])
            if len(kept) < JOB_HISTORY:
                kept.append(record)
    jobs = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        run = runs.get(name)
        paused = run is not None and run.paused_at is not None
        # beat's schedule runs from beat's own last run: an operator's run now moves nothing
        by_beat = next((r.started_at for r in recent.get(name, ()) if r.started_by == "beat"), None)
        last_start = by_beat or (run.last_started_at if run else None)
        jobs.append(
            ScheduledJob(
                name=name,
                task=entry["task"],
                every=describe_schedule(entry["schedule"]),
                kwargs=dict(entry.get("kwargs") or {}),
                last_run=run,
                next_run=None if paused else next_run(entry["schedule"], last_start),
                recent=tuple(recent.get(name, ())),
            )
        )
    return jobs


def job_name_for(task_name: str, kwargs: dict[str, Any] | None) -> str | None:
    """The beat entry a run of ``task_name`` with ``kwargs`` belongs to, or None.

    One task can back several entries (``audit.verify`` hourly incremental and nightly
    full): the entry whose kwargs equal the call's wins, else the first for the task.
    """
    candidates = [
        (name, _with_defaults(task_name, entry.get("kwargs")))
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if entry.get("task") == task_name
    ]
    called = _with_defaults(task_name, kwargs)
    for name, entry_kwargs in candidates:
        if entry_kwargs == called:
            return name
    return candidates[0][0] if candidates else None


def _with_defaults(task_name: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``kwargs`` with the task function's defaults filled in (``verify()`` is
    ``verify(incremental=False)``), so a call and an entry compare by meaning."""
    task = payflow_celery.app.tasks.get(task_name)
    try:
        bound = inspect.signature(task.run).bind_partial(**(kwargs or {}))
    except (AttributeError, TypeError, ValueError):
        return dict(kwargs or {})
    bound.apply_defaults()
    return dict(bound.arguments)


def _json_result(value: Any) -> Any:
    text = json.dumps(value, default=str, sort_keys=True)
    if len(text) > RESULT_MAX_CHARS:
        return {"truncated": text[:RESULT_MAX_CHARS]}
    return json.loads(text)


@db.atomic
def job_run_record(
    *,
    job: str,
    task: str,
    started_at: datetime.datetime,
    duration_seconds: float,
    ok: bool,
    result: Any = None,
    error: str = "",
    started_by: str = "",
) -> None:
    """Record one finished run of ``job``: overwrite its latest run, add to its totals,
    and keep it among the job's last ``JOB_HISTORY`` runs (``JobRunRecord``).

    One transaction. Counters move with ``F()`` expressions, so two runs finishing at once
    both count. The first run of a job inserts its row; losing that insert race to a
    concurrent first run is caught in a savepoint and turned into the update.
    """
    finished_at = timezone.now()
    _keep_record(
        JobRunRecord(
            job=job,
            task=task,
            started_at=started_at,
            duration_seconds=round(duration_seconds, 6),
            status=JobRun.OK if ok else JobRun.FAILED,
            error="" if ok else error[:500],
            started_by=started_by[:100],
        )
    )
    values: dict[str, Any] = {
        "task": task,
        "last_started_at": started_at,
        "last_finished_at": finished_at,
        "last_duration_seconds": round(duration_seconds, 6),
        "last_status": JobRun.OK if ok else JobRun.FAILED,
        "last_result": _json_result(result) if ok else None,
        "last_error": "" if ok else error[:500],
    }
    if ok:
        values["last_success_at"] = finished_at
    counts = {"runs": F("runs") + 1, "failures": F("failures") + (0 if ok else 1)}
    if JobRun.objects.filter(job=job).update(**values, **counts):
        return
    try:
        with transaction.atomic():
            JobRun.objects.create(job=job, runs=1, failures=0 if ok else 1, **values)
    except IntegrityError:
        JobRun.objects.filter(job=job).update(**values, **counts)


def _keep_record(record: JobRunRecord) -> None:
    record.save(force_insert=True)
    older = list(
        JobRunRecord.objects.filter(job=record.job)
        .order_by("-id")
        .values_list("id", flat=True)[JOB_HISTORY : JOB_HISTORY + 1]
    )
    if older:
        JobRunRecord.objects.filter(job=record.job, id__lte=older[0]).delete()


# --- running now -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """A scheduled job an operator asked to run now (``operations.operator_job_run_now``
    audits the request; ``job_run_now_send`` then queues it, outside any transaction)."""

    job: str
    task: str
    kwargs: dict[str, Any]


def job_run_request(job: str) -> RunRequest:
    """What running ``job`` now means: its task with the schedule's arguments;
    ``JobPauseRefused`` for a name that is not a scheduled job."""
    task = _task_of(job)
    return RunRequest(job, task, dict(settings.CELERY_BEAT_SCHEDULE[job].get("kwargs") or {}))


def job_run_now_send(request: RunRequest) -> str:
    """Queue one run of the job for the workers; the id of the queued task. Not beat's run
    (no ``payflow_job`` header), so it runs even while the job is paused, and is recorded
    with the operator who asked (the audit context travels in the message's headers)."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("queue a job outside any database transaction")
    headers = context.current().as_headers()
    try:
        sent = payflow_celery.app.send_task(request.task, kwargs=request.kwargs, headers=headers)
    except Exception as exc:  # the broker: down, refusing, timing out
        logger.warning("could not queue a run of %s", request.job, exc_info=True)
        raise JobQueueFailed(
            f"the run of {request.job} was not queued: the message broker did not take it "
            f"({type(exc).__name__}); the request is in the audit log, try again"
        ) from None
    return str(sent.id)


class JobQueueFailed(Exception):
    """The broker did not take a run an operator asked for."""


# --- pausing ---------------------------------------------------------------------------


class JobPauseRefused(Exception):
    """Not a scheduled job, or already in the state asked for."""


def job_paused(job: str) -> bool:
    """Whether beat's runs of ``job`` are to be skipped now."""
    return JobRun.objects.filter(job=job, paused_at__isnull=False).exists()


# The task base class skips beat's runs of a paused job by asking this (payflow.celery
# cannot import this module: it is loaded before Django's app registry is ready).
payflow_celery.pause_check = job_paused


def _task_of(job: str) -> str:
    """The task a scheduled job runs; ``JobPauseRefused`` if there is no such job."""
    if job not in settings.CELERY_BEAT_SCHEDULE:
        raise JobPauseRefused(f"there is no scheduled job named {job!r}")
    return settings.CELERY_BEAT_SCHEDULE[job]["task"]


def job_pause(*, job: str, by: str, reason: str) -> JobRun:
    """Pause ``job``: beat still fires it, but its runs are skipped (``ContextTask``) until
    ``job_resume``. Runs started otherwise (an operator, a test, a nudge) still run.

    Compare-and-set: of two operators pausing at once, one is refused. Call inside the
    caller's transaction (``payflow.operations`` audits it in the same one).
    """
    JobRun.objects.get_or_create(job=job, defaults={"task": _task_of(job)})
    paused = JobRun.objects.filter(job=job, paused_at__isnull=True).update(
        paused_at=timezone.now(), paused_by=by[:150], pause_reason=reason[:500]
    )
    if not paused:
        raise JobPauseRefused(f"{job} is already paused")
    return JobRun.objects.get(job=job)


def job_resume(*, job: str) -> JobRun:
    """Resume a paused ``job``: beat's next run goes ahead. Compare-and-set like the pause."""
    _task_of(job)
    resumed = JobRun.objects.filter(job=job, paused_at__isnull=False).update(
        paused_at=None, paused_by="", pause_reason=""
    )
    if not resumed:
        raise JobPauseRefused(f"{job} is not paused")
    return JobRun.objects.get(job=job)


# --- Celery signals -------------------------------------------------------------------

# Keyed by task id *and* thread: a redelivered message (same task id) can run at the same
# time as the original in the worker's thread pool, and each run is recorded.
_started: dict[tuple[str, int], tuple[float, datetime.datetime]] = {}
_started_lock = threading.Lock()


@signals.task_prerun.connect
def _job_started(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task is None or task_id is None or job_name_for(task.name, kwargs.get("kwargs")) is None:
        return
    with _started_lock:
        _started[(task_id, threading.get_ident())] = (time.monotonic(), timezone.now())


@signals.task_postrun.connect
def _job_finished(
    task_id: str | None = None,
    task: Any = None,
    retval: Any = None,
    state: str | None = None,
    **kwargs: Any,
) -> None:
    with _started_lock:
        started = _started.pop((task_id or "", threading.get_ident()), None)
    if task is None or started is None or retval == payflow_celery.SKIPPED:
        return  # not a job, or beat's run of a paused job (it did nothing)
    job = job_name_for(task.name, kwargs.get("kwargs"))
    if job is None:
        return
    ok = state == "SUCCESS"
    error = "" if ok else f"{type(retval).__name__}: {retval}"
    headers = payflow_celery.payflow_headers(task.request)
    if headers.get("payflow_job"):
        started_by = "beat"
    elif headers.get("payflow_actor_type") and headers.get("payflow_actor_id"):
        started_by = f"{headers['payflow_actor_type']}:{headers['payflow_actor_id']}"
    else:
        started_by = ""
    try:
        job_run_record(
            job=job,
            task=task.name,
            started_at=started[1],
            duration_seconds=time.monotonic() - started[0],
            ok=ok,
            result=retval if ok else None,
            error=error,
            started_by=started_by,
        )
    except Exception:  # the record of a run must never turn a good run into a failed one
        logger.exception("could not record the run of job %s", job)
