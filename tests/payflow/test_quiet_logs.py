"""The relay runs every second; its routine Celery lines are logged only at DEBUG.

Before, beat's "Sending due task", the worker's "Received task" and "succeeded in" for
``outbox.relay_sweep`` made three INFO lines a second. Celery's own code produces the
records here (the tracer of an eager run, beat's scheduler sending to the test broker).
"""

import logging

import pytest
from celery import beat

from outbox.tasks import relay_sweep
from payflow.celery import app
from payflow.tasks import ping


def messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


@pytest.mark.django_db
def test_a_relay_sweep_logs_no_routine_line_while_other_tasks_still_do(caplog):
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        relay_sweep.apply()
        ping.apply()
    logged = messages(caplog, "celery.app.trace")
    assert [m for m in logged if "outbox.relay_sweep" in m] == []
    assert any("payflow.ping" in m and "succeeded" in m for m in logged)


def test_beat_sends_the_relay_sweep_without_an_info_line_but_other_jobs_with_one(caplog):
    scheduler = beat.Scheduler(app=app, lazy=True)
    sweep = beat.ScheduleEntry(name="outbox-relay-sweep", task="outbox.relay_sweep", app=app)
    other = beat.ScheduleEntry(name="ping", task="payflow.ping", app=app)
    with caplog.at_level(logging.INFO, logger="celery.beat"):
        scheduler.apply_entry(sweep)
        scheduler.apply_entry(other)
    logged = messages(caplog, "celery.beat")
    assert logged == ["Scheduler: Sending due task ping (payflow.ping)"]


def test_a_failing_quiet_task_is_still_logged(caplog):
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        relay_sweep.apply(args=["unexpected"])  # a TypeError inside Celery's tracer
    assert any(
        r.levelno >= logging.ERROR and "outbox.relay_sweep" in r.getMessage()
        for r in caplog.records
    )


def test_at_debug_the_relay_sweeps_routine_lines_are_logged(caplog):
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)  # what `celery worker --loglevel DEBUG` sets
    try:
        scheduler = beat.Scheduler(app=app, lazy=True)
        sweep = beat.ScheduleEntry(name="outbox-relay-sweep", task="outbox.relay_sweep", app=app)
        with caplog.at_level(logging.INFO, logger="celery.beat"):
            scheduler.apply_entry(sweep)
    finally:
        root.setLevel(level)
    assert messages(caplog, "celery.beat") == [
        "Scheduler: Sending due task outbox-relay-sweep (outbox.relay_sweep)"
    ]
