"""The shortened fault drill in ``make test``: every fault once, in a 10-second window of
the load, on production's topology on loopback (tests/drill/run.py); ``make drill`` runs
the full one. Passes only with 0 operations lost, duplicated or answered wrongly, the
bank invariants, a log that verifies and reconciles, every event on Kafka, a witness that
accepted every checkpoint, and every fault recovered within the RTO."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.galera import missing_requirements
from tests.missing import missing_part

pytestmark = [pytest.mark.galera, pytest.mark.kafka, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_short_drill_loses_and_duplicates_nothing(infra_dir):
    missing = missing_requirements() + [
        binary for binary in ("haproxy", "socat", "redis-server") if not shutil.which(binary)
    ]
    if missing:
        missing_part(f"the drill needs: {', '.join(missing)}")
    workdir = infra_dir / "drill"
    result = subprocess.run(
        [sys.executable, "-m", "tests.drill", "--window", "10", "--rounds", "1",
         "--baseline", "5", "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    print(result.stdout)  # the table, in the test log
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 1 + 7  # header, no fault, seven faults
    for row in table[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3:6] == ["0", "0", "0"], row  # lost, duplicated, wrong
    assert "RTO 30 s exceeded by: 0 faults" in result.stdout
    assert "ALARM" not in result.stdout
