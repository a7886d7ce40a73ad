"""Celery's own log lines: the relay's routine ones only at DEBUG, runtimes readable.

The relay runs every second; its routine Celery lines are logged only at DEBUG.

Before, beat's "Sending due task", the worker's "Received task" and "succeeded in" for
``outbox.relay_sweep`` made three INFO lines a second. Celery's own code produces the
records here (the tracer of an eager run, beat's scheduler sending to the test broker).
"""

import io
import logging

import pytest
from celery import beat
from celery.app import trace

from outbox.tasks import relay_sweep
from payflow.celery import app
from payflow.logging import install_pan_redaction
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


def test_a_tasks_runtime_is_not_masked_as_a_card_number():
    # A runtime whose full float repr is a Luhn-valid 17-digit run: the PAN filter masked
    # it to "0.*************7048" in every "succeeded in" line that had one.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_target = logging.getLogger("celery.app.trace")
    install_target.addHandler(handler)
    install_pan_redaction(install_target)
    level = install_target.level
    install_target.setLevel(logging.INFO)
    try:
        trace.info(trace.LOG_SUCCESS, {
            "id": "t1", "name": "payflow.ping", "return_value": "{}",
            "runtime": 0.24771754354597048, "args": "()", "kwargs": "{}",
        })  # fmt: skip
    finally:
        install_target.removeHandler(handler)
        install_target.setLevel(level)
    assert stream.getvalue().strip() == "Task payflow.ping[t1] succeeded in 0.247718s: {}"
