"""The kill -9 suite's real parts: gunicorn with fault injection on the test database, the
session's real Celery worker, and the table of cases and outcomes printed after the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.gunicorn import Gunicorn, gunicorn_env

#: One row per case run, printed by ``pytest_terminal_summary``.
RESULTS: list[dict[str, str]] = []
COLUMNS = (
    ("case", "case"),
    ("killed", "killed at"),
    ("first_retry", "retry at once"),
    ("recovery", "recovery job"),
    ("final", "final answer"),
    ("state", "object"),
    ("acquirer", "acquirer"),
    ("journal", "journal"),
    ("verdict", "checks"),
)

#: The crash suite's timings: short enough to wait out a claim's lease in a test, and
#: consistent with the start-up check (lease and recovery >= 3 x the acquirer timeout).
TIMINGS = {
    "ACQUIRER_TIMEOUT_SECONDS": "1",
    "IDEMPOTENCY_LOCK_SECONDS": "3",
    "PAYMENT_RECOVERY_AFTER_SECONDS": "3",
}


def web_env(kafka_bootstrap: str, **extra: str) -> dict[str, str]:
    """The web environment with fault injection on and the crash suite's timings."""
    return gunicorn_env(kafka_bootstrap, **{"FAULT_INJECTION": "True", **TIMINGS, **extra})


@pytest.fixture(scope="session")
def crashable_web(
    infra_dir: Path, django_db_setup, kafka_broker, celery_worker_process
) -> Iterator[Gunicorn]:
    """gunicorn (2 workers x 2 threads) whose requests may ask to be killed at a fault
    point (``X-PayFlow-Fault``), on the test database."""
    server = Gunicorn(infra_dir / "gunicorn", web_env(kafka_broker.bootstrap)).start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    widths = {
        name: max(len(title), *(len(row.get(name, "")) for row in RESULTS))
        for name, title in COLUMNS
    }
    terminalreporter.section("kill -9 fault suite: cases and outcomes")
    header = " | ".join(title.ljust(widths[name]) for name, title in COLUMNS)
    terminalreporter.write_line(header)
    terminalreporter.write_line("-+-".join("-" * widths[name] for name, _ in COLUMNS))
    for row in RESULTS:
        line = " | ".join(row.get(name, "").ljust(widths[name]) for name, _ in COLUMNS)
        terminalreporter.write_line(line)
