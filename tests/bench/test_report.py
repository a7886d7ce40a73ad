"""The benchmark's arithmetic and report writer, on made-up numbers (no timing, no servers)."""

import json
import math

import pytest

from bench import loadgen, profile, report, stats
from tests.missing import import_or_missing


def test_percentile_is_the_nearest_rank_of_the_samples():
    samples = list(range(1, 101))  # 1..100

    assert stats.percentile(samples, 50) == 50
    assert stats.percentile(samples, 99) == 99
    assert stats.percentile(samples, 100) == 100
    assert stats.percentile([7.5], 99) == 7.5
    assert math.isnan(stats.percentile([], 50))


def test_percentile_refuses_zero():
    with pytest.raises(ValueError, match="percentile"):
        stats.percentile([1, 2], 0)


def test_summary_reports_observed_values_only():
    summary = stats.summary([5.0, 1.0, 3.0, 2.0, 4.0])

    assert summary == {
        "count": 5,
        "p50": 3.0,
        "p90": 5.0,
        "p95": 5.0,
        "p99": 5.0,
        "p999": 5.0,
        "max": 5.0,
        "mean": 3.0,
    }


def test_median_ignores_missing_runs_and_ratio_of_zero_is_nan():
    assert stats.median([3, None, 1, 2]) == 2
    assert math.isnan(stats.ratio(5, 0))


def test_per_second_buckets_completions():
    assert stats.per_second([0.1, 0.5, 1.2, 2.9, 3.5], start=0, duration=3) == [2, 1, 1]


def test_histogram_counts_every_sample_once():
    counts = report.histogram([0.05, 1.0, 1.0, 50.0, 10**6])

    assert sum(counts) == 5
    assert counts[0] == 1  # below the first edge goes to the first bin
    assert counts[-1] == 1  # above the last edge goes to the last bin


def test_open_loop_requests_carry_a_unique_idempotency_key():
    spec = loadgen.Spec(
        host="127.0.0.1",
        port=8000,
        method="POST",
        path="/v1/payments",
        headers={"Authorization": "Bearer x"},
        body='{"n": "{n}"}',
        idempotency_prefix="run1",
    )

    first, second = loadgen.build_request(spec, 1), loadgen.build_request(spec, 2)

    assert first.startswith(b"POST /v1/payments HTTP/1.1\r\n")
    assert b"Idempotency-Key: run1-1\r\n" in first
    assert b"Idempotency-Key: run1-2\r\n" in second
    assert first.endswith(b'\r\n\r\n{"n": "1"}')
    assert b"Content-Length: 10\r\n" in first


def test_collapsed_stacks_are_summarized_by_area():
    stacks = profile.read_collapsed(
        "handle (gunicorn/workers/gthread.py:1);entry_hash (/app/audit/chain.py:70) 2\n"
        "handle (gunicorn/workers/gthread.py:1);query (site-packages/MySQLdb/connections.py:9) 98\n"
    )

    summary = profile.summarize(stacks)

    assert summary["samples"] == 100
    assert summary["hashing_signing_share"] == 0.02
    assert summary["top_self"][0]["name"] == "query (MySQLdb/connections.py)"


def _run(throughput, p50=10.0, p99=30.0):
    return {
        "throughput": throughput,
        "per_second": [throughput] * 3,
        "latency_ms": {"p50": p50, "p95": 20.0, "p99": p99, "p999": p99},
        "histogram": report.histogram([p50, p99]),
        "statuses": {"201": 3},
        "errors": {},
        "loadgen_cpu_fraction": 0.1,
        "server_counters": {"Innodb_deadlocks": 0.0},
    }


def _results():
    plan = {
        "name": "quick",
        "repeats": 2,
        "galera_repeats": 2,
        "closed_seconds": 4,
        "open_seconds": 5,
        "warmup": 1,
        "concurrency": 12,
    }
    return {
        "started": "2026-01-01T00:00:00+00:00",
        "machine": {"cores": 2, "cpu": "test", "memory_gib": 1.0, "kernel": "x"},
        "load_average_start": [1.0, 1.0, 1.0],
        "load_average_end": [2.0, 2.0, 2.0],
        "versions": {"python": "3.11"},
        "settings": {"plan": plan},
        "wall_seconds": 1.0,
        "single": {
            "open_rate": 70.0,
            "lag_p99_ms_runs": [500.0, 700.0],
            "retries": {},
            "runs": {
                "payment": [_run(100), _run(120)],
                "trivial": [_run(400), _run(300)],
                "raw_sql": [_run(200), _run(200)],
                "open": [_run(70, 10, 50), _run(70, 20, 60)],
            },
        },
        "relay": {
            "rows": 10,
            "runs": [
                {
                    "relay": {"events_per_second": 30_000, "published": 10, "left": 0},
                    "raw": {"events_per_second": 100_000},
                }
            ],
        },
        "audit": {
            "rows": 10,
            "runs": [
                {
                    "verify_rows_per_second": 200_000,
                    "raw_rows_per_second": 1_000_000,
                    "rows": 10,
                    "bytes": 5000,
                }
            ],
            "archive": {"note": "not measured: archiver not on this branch"},
        },
        "profile": {"available": False, "note": "not profiled"},
    }


def test_figures_are_medians_and_ratios_of_paired_runs():
    figures = report.figures(_results())

    assert figures["payment_max_per_s"] == 110
    assert figures["payment_over_trivial"] == pytest.approx((100 / 400 + 120 / 300) / 2)
    assert figures["open_p99_ms"] == 55
    assert figures["open_p99_over_p50"] == pytest.approx((5 + 3) / 2)
    assert figures["lag_p99_ms"] == 600
    assert figures["relay_over_raw"] == 0.3


def test_goals_say_met_or_not_with_the_margin():
    rows = {row["goal"]: row for row in report.goals(report.figures(_results()))}

    assert rows["payment create, single MariaDB, closed loop (payments/s)"]["met"] is False
    assert rows["relay from a backlog (events/s)"]["met"] is True
    # a goal of zero (no failure at all) is met at zero and reads as the count
    failures = rows["non-2xx, errors and deadlocks in the closed-loop runs"]
    assert failures["met"] is (failures["value"] == 0)
    assert failures["margin"] == f"{failures['value']:g}"
    assert rows["3-node Galera ÷ single"]["margin"] == "not measured"


def test_report_writes_json_markdown_and_plots(tmp_path):
    import_or_missing("matplotlib")

    paths = report.write(_results(), tmp_path)

    names = sorted(path.name.split("-quick")[-1] for path in paths)
    assert names == ["-histogram.png", "-percentiles.png", "-throughput.png", ".json", ".md"]
    markdown = next(path for path in paths if path.suffix == ".md").read_text()
    assert "| payment ÷ trivial | 0.325 |" in markdown
    assert "not measured: archiver not on this branch" in markdown
    stored = json.loads(next(path for path in paths if path.suffix == ".json").read_text())
    assert stored["figures"]["payment_max_per_s"] == 110
