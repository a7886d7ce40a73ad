"""The report: derived figures, goals met or not, JSON + Markdown + PNG plots."""

from __future__ import annotations

import bisect
import datetime
import json
import math
import shutil
from pathlib import Path
from typing import Any

from bench import stats

#: Latency histogram bin edges in ms: 20 per decade from 0.1 ms to 100 s.
EDGES_MS = [10 ** (k / 20) for k in range(-20, 101)]


def histogram(latencies_ms: list[float]) -> list[int]:
    """Counts per bin ``[EDGES_MS[i], EDGES_MS[i+1])``; below and above go to the ends."""
    counts = [0] * (len(EDGES_MS) - 1)
    for value in latencies_ms:
        index = bisect.bisect_right(EDGES_MS, value) - 1
        counts[min(max(index, 0), len(counts) - 1)] += 1
    return counts


def _median_of(runs: list[dict], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(value)
    return stats.median(values)


def _paired_ratio(first: list[dict], second: list[dict], key: str = "throughput") -> float:
    return stats.median(stats.ratio(a[key], b[key]) for a, b in zip(first, second, strict=False))


def figures(results: dict) -> dict:
    single = results.get("single", {}).get("runs", {})
    out: dict[str, Any] = {}
    if single:
        out["payment_max_per_s"] = _median_of(single["payment"], "throughput")
        out["trivial_per_s"] = _median_of(single["trivial"], "throughput")
        out["raw_sql_per_s"] = _median_of(single["raw_sql"], "throughput")
        out["payment_over_trivial"] = _paired_ratio(single["payment"], single["trivial"])
        out["payment_over_raw_sql"] = _paired_ratio(single["payment"], single["raw_sql"])
        out["open_rate_per_s"] = results["single"]["open_rate"]
        for p in ("p50", "p95", "p99"):
            out[f"open_{p}_ms"] = _median_of(single["open"], "latency_ms", p)
        out["open_p99_over_p50"] = stats.median(
            stats.ratio(run["latency_ms"]["p99"], run["latency_ms"]["p50"])
            for run in single["open"]
        )
        out["open_achieved_per_s"] = _median_of(single["open"], "throughput")
        out["payment_app_cpu_ms"] = _median_of(single["payment"], "app_cpu_ms_per_request")
        out["payment_app_cpu_cores"] = _median_of(single["payment"], "app_cpu_cores")
        out["trivial_app_cpu_ms"] = _median_of(single["trivial"], "app_cpu_ms_per_request")
        if all("db_cpu_ms_per_request" in run for run in single["payment"]):
            out["payment_db_cpu_ms"] = _median_of(single["payment"], "db_cpu_ms_per_request")
        out["closed_loop_failures"] = sum(
            sum(run.get("errors", {}).values())
            + sum(count for code, count in run.get("statuses", {}).items() if str(code)[:1] != "2")
            + run.get("server_counters", {}).get("Innodb_deadlocks", 0)
            for kind in ("payment", "trivial")
            for run in single.get(kind, [])
        )
        background = results["single"].get("background_cpu_cores", {})
        out["sequencer_cpu_cores"] = background.get("sequencer", math.nan)
        out["relay_loop_cpu_cores"] = background.get("relay", math.nan)
        out["audit_unsequenced"] = results["single"].get("audit_log", {}).get("unsequenced")
        out["lag_p99_ms"] = stats.median(results["single"]["lag_p99_ms_runs"])
    if "payment_sql" in results:
        out["payment_statements"] = results["payment_sql"]["statements"]
        out["payment_transactions"] = results["payment_sql"]["transactions"]
        out["acquirer_statements"] = results["payment_sql"].get("acquirer_statements")
        out["acquirer_transactions"] = results["payment_sql"].get("acquirer_transactions")
    galera = results.get("galera", {}).get("runs", {})
    if galera:
        out["galera_max_per_s"] = _median_of(galera["payment"], "throughput")
        out["galera_over_single"] = stats.ratio(
            out["galera_max_per_s"], out.get("payment_max_per_s", math.nan)
        )
        for p in ("p50", "p95", "p99"):
            out[f"galera_open_{p}_ms"] = _median_of(galera["open"], "latency_ms", p)
        out["galera_lag_p99_ms"] = stats.median(results["galera"]["lag_p99_ms_runs"])
    relay = results.get("relay", {}).get("runs", [])
    if relay:
        out["relay_per_s"] = stats.median(run["relay"]["events_per_second"] for run in relay)
        out["raw_producer_per_s"] = stats.median(run["raw"]["events_per_second"] for run in relay)
        out["relay_over_raw"] = stats.median(
            stats.ratio(run["relay"]["events_per_second"], run["raw"]["events_per_second"])
            for run in relay
        )
    audit = results.get("audit", {}).get("runs", [])
    if audit:
        out["verify_rows_per_s"] = _median_of(audit, "verify_rows_per_second")
        out["raw_sha256_rows_per_s"] = _median_of(audit, "raw_rows_per_second")
        out["verify_over_raw"] = stats.median(
            stats.ratio(run["verify_rows_per_second"], run["raw_rows_per_second"]) for run in audit
        )
        seeded = results["audit"].get("seed", {})
        if "sequenced_per_second" in seeded:
            out["audit_sequenced_per_s"] = seeded["sequenced_per_second"]
    prof = results.get("profile", {})
    if prof.get("available"):
        out["hashing_signing_share"] = prof["hashing_signing_share"]
    return out


GOALS = [
    # key, label, target, higher is better (issue 17's goals; lower-is-better ones are met
    # at or below the target)
    ("payment_app_cpu_ms", "application CPU per payment (ms)", 3, False),
    ("payment_db_cpu_ms", "MariaDB CPU per payment (ms)", 1.5, False),
    ("payment_statements", "SQL statements per payment", 10, False),
    ("payment_transactions", "transactions per payment", 2, False),
    ("payment_over_trivial", "payment ÷ trivial endpoint", 0.3, True),
    ("payment_max_per_s", "payment create, single MariaDB, closed loop (payments/s)", 400, True),
    ("closed_loop_failures", "non-2xx, errors and deadlocks in the closed-loop runs", 0, False),
    ("galera_over_single", "3-node Galera ÷ single", 0.7, True),
    ("open_p99_ms", "P99 at 70% of max (ms)", 200, False),
    ("open_p99_over_p50", "P99 / P50 at 70% of max", 4, False),
    ("relay_per_s", "relay from a backlog (events/s)", 30_000, True),
    ("lag_p99_ms", "commit-to-delivery lag P99 under payment load (ms)", 250, False),
    ("verify_rows_per_s", "audit verification (entries/s)", 250_000, True),
    ("hashing_signing_share", "hashing + signing share of a payment's CPU", 0.01, False),
]


def goals(figs: dict) -> list[dict]:
    rows = []
    for key, label, target, higher in GOALS:
        value = figs.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            rows.append(
                {
                    "goal": label,
                    "target": target,
                    "value": None,
                    "met": None,
                    "margin": "not measured",
                }
            )
            continue
        met = value >= target if higher else value <= target
        rows.append(
            {
                "goal": label,
                "target": target,
                "value": value,
                "met": met,
                "margin": f"{value / target:.2f}× the target" if target else f"{value:g}",
            }
        )
    return rows


# --- output -----------------------------------------------------------------------------------


def write(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    if results.get("settings", {}).get("plan", {}).get("name") == "quick":
        stamp += "-quick"
    results["figures"] = figures(results)
    results["goals"] = goals(results["figures"])
    json_path = out_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    plots = plot(results, out_dir, stamp)
    flame = results.get("profile", {}).get("flame_svg")
    if flame and Path(flame).exists():  # the profile's flame graph, kept beside the plots
        plots.append(Path(shutil.copyfile(flame, out_dir / f"{stamp}-flame.svg")))
    md_path = out_dir / f"{stamp}.md"
    md_path.write_text(markdown(results, [p.name for p in plots]))
    return [json_path, md_path, *plots]


def plot(results: dict, out_dir: Path, stamp: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    series = []
    for phase, label in (("single", "single MariaDB"), ("galera", "Galera")):
        runs = results.get(phase, {}).get("runs", {})
        for kind in ("payment", "trivial"):
            for number, run in enumerate(runs.get(kind, []), 1):
                series.append((f"{kind} / {label} #{number}", run["per_second"]))
    if series:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for label, values in series:
            ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        ax.set(
            xlabel="second of the closed-loop run",
            ylabel="completed requests/s",
            title="Throughput over time (closed loop, saturation)",
            yscale="log",
        )
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out_dir / f"{stamp}-throughput.png"))
    bars = []
    for phase, label in (("single", "single MariaDB"), ("galera", "Galera")):
        runs = results.get(phase, {}).get("runs", {}).get("open", [])
        if runs:
            values = [
                stats.median(r["latency_ms"][p] for r in runs)
                for p in ("p50", "p95", "p99", "p999")
            ]
            bars.append((f"{label} @ {results[phase]['open_rate']}/s", values))
    if bars:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / len(bars)
        for index, (label, values) in enumerate(bars):
            xs = [i + index * width for i in range(4)]
            ax.bar(xs, values, width=width, label=label)
            for x, value in zip(xs, values, strict=True):
                ax.text(x, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(
            [i + width * (len(bars) - 1) / 2 for i in range(4)], ["P50", "P95", "P99", "P99.9"]
        )
        ax.axhline(200, color="red", linestyle="--", linewidth=1, label="P99 goal 200 ms")
        ax.set(
            ylabel="latency (ms)", title="Payment latency, open loop at 70% of max (median of runs)"
        )
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / f"{stamp}-percentiles.png"))
    hist = []
    for phase, label in (("single", "single MariaDB"), ("galera", "Galera")):
        runs = results.get(phase, {}).get("runs", {}).get("open", [])
        if runs:
            counts = [sum(r["histogram"][i] for r in runs) for i in range(len(EDGES_MS) - 1)]
            hist.append((label, counts))
    if hist:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for label, counts in hist:
            ax.stairs(counts, EDGES_MS, label=label, fill=False, linewidth=1.5)
        ax.set(
            xscale="log",
            xlabel="latency (ms, log scale)",
            ylabel="requests",
            title="Payment latency histogram, open loop at 70% of max (all runs)",
        )
        ax.legend()
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out_dir / f"{stamp}-histogram.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 1:
            return f"{value:.3f}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict, plots: list[str]) -> str:
    figs, machine, plan = results["figures"], results["machine"], results["settings"]["plan"]
    lines = [
        f"# PayFlow benchmark — {results['started']} ({plan['name']} run)",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}. Load average at start "
        f"{', '.join(f'{v:.2f}' for v in results['load_average_start'])}, at end "
        f"{', '.join(f'{v:.2f}' for v in results['load_average_end'])}. Everything (server, "
        "database, broker, load generator) shares these cores, and so may other work on "
        "the machine: read ratios (measured alternately in the same run) before absolutes.",
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + (f", Galera {results['galera']['provider_version']}" if "galera" in results else "")
        + ".",
        "",
        f"Wall clock: {results['wall_seconds']} s. Each figure is the median of "
        f"{plan['repeats']} runs ({plan['galera_repeats']} on Galera); closed-loop runs "
        f"{plan['closed_seconds']} s after {plan['warmup']} s warm-up at concurrency "
        f"{plan['concurrency']}, open-loop runs {plan['open_seconds']} s. Method: "
        "[bench/README.md](../README.md).",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    rows = [
        ("payment create, single MariaDB, closed loop (payments/s)", "payment_max_per_s"),
        ("trivial endpoint GET /v1/ping, same server, same run (req/s)", "trivial_per_s"),
        ("payment ÷ trivial", "payment_over_trivial"),
        (
            "raw SQL replay of a payment's statements, same concurrency (payments/s)",
            "raw_sql_per_s",
        ),
        ("payment ÷ raw SQL", "payment_over_raw_sql"),
        ("SQL statements per payment (in transactions); the test acquirer's apart", None),
        ("application CPU per payment, gunicorn master + workers (ms)", "payment_app_cpu_ms"),
        ("application CPU during the payment runs (cores)", "payment_app_cpu_cores"),
        ("application CPU per GET /v1/ping (ms)", "trivial_app_cpu_ms"),
        ("MariaDB CPU per payment, mariadbd process accounting (ms)", "payment_db_cpu_ms"),
        ("non-2xx, errors and deadlocks in the closed-loop runs", "closed_loop_failures"),
        ("audit sequencer CPU over the payment phase (cores)", "sequencer_cpu_cores"),
        ("outbox relay process CPU, lag runs only (cores)", "relay_loop_cpu_cores"),
        ("audit entries not in the log after the payment phase", "audit_unsequenced"),
        ("open loop: offered rate (70% of max, payments/s)", "open_rate_per_s"),
        ("open loop: achieved (payments/s)", "open_achieved_per_s"),
        ("open loop P50 (ms)", "open_p50_ms"),
        ("open loop P95 (ms)", "open_p95_ms"),
        ("open loop P99 (ms)", "open_p99_ms"),
        ("open loop P99 ÷ P50", "open_p99_over_p50"),
        ("outbox commit-to-delivery lag P99 under payment load (ms)", "lag_p99_ms"),
        ("3-node Galera, closed loop (payments/s)", "galera_max_per_s"),
        ("Galera ÷ single", "galera_over_single"),
        ("Galera open loop P50 / P95 / P99 (ms)", None),
        ("Galera lag P99 (ms)", "galera_lag_p99_ms"),
        (
            f"relay, backlog of {results.get('relay', {}).get('rows', '—')} events (events/s)",
            "relay_per_s",
        ),
        (
            "raw confluent-kafka producer, same messages, same broker (events/s)",
            "raw_producer_per_s",
        ),
        ("relay ÷ raw producer", "relay_over_raw"),
        (
            "audit sequencer appending the seeded entries to the log (entries/s)",
            "audit_sequenced_per_s",
        ),
        (
            f"audit log verification, verify_log over {results.get('audit', {}).get('rows', '—')} "
            "entries from the database (entries/s)",
            "verify_rows_per_s",
        ),
        ("raw SHA-256 over the same bytes in memory (entries/s)", "raw_sha256_rows_per_s"),
        ("verification ÷ raw SHA-256", "verify_over_raw"),
        (
            "hashing + signing share of the payment workers' samples (signing: the sequencer's)",
            "hashing_signing_share",
        ),
    ]
    for label, key in rows:
        if key is None and label.startswith("SQL"):
            value = (
                f"{_fmt(figs.get('payment_statements'))} ({_fmt(figs.get('payment_transactions'))})"
                f"; acquirer {_fmt(figs.get('acquirer_statements'))} "
                f"({_fmt(figs.get('acquirer_transactions'))})"
            )
        elif key is None:
            value = " / ".join(_fmt(figs.get(f"galera_open_{p}_ms")) for p in ("p50", "p95", "p99"))
        else:
            value = _fmt(figs.get(key), 2 if "over" in key else 1)
        lines.append(f"| {label} | {value} |")
    archive = results.get("audit", {}).get("archive", {})
    lines.append(f"| audit archive (entries/s) | {archive.get('note', '—')} |")
    lines += [
        "",
        "## Goals (design targets, not CI gates)",
        "",
        "| goal | target | measured | met | margin |",
        "|---|---|---|---|---|",
    ]
    for row in results["goals"]:
        met = {True: "met", False: "**not met**", None: "—"}[row["met"]]
        lines.append(
            f"| {row['goal']} | {_fmt(float(row['target']))} | "
            f"{_fmt(row['value'], 2)} | {met} | {row['margin']} |"
        )
    lines += _causes(results)
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    lines += _runs_section(results) + _profile_section(results) + _settings_section(results)
    return "\n".join(lines) + "\n"


def _causes(results: dict) -> list[str]:
    """Where the payment's time went, for the goals that were missed."""
    figs, prof = results["figures"], results.get("profile", {})
    lines = ["", "### Why, where a goal is missed", ""]
    if prof.get("available"):
        areas = ", ".join(f"{row['name']} {row['share']:.0%}" for row in prof["categories"][:8])
        calls = ", ".join(f"`{row['name']}` {row['share']:.0%}" for row in prof["top_self"][:5])
        lines.append(
            f"- Profile of the payment workers (inclusive share of samples): {areas}. "
            f"Largest self time: {calls}."
        )
    raw, trivial = figs.get("payment_over_raw_sql"), figs.get("payment_over_trivial")
    if raw is not None and trivial is not None:
        lines.append(
            f"- The payment reaches {_fmt(raw, 2)} of the rate at which the database runs its "
            f"own statements without Django, and {_fmt(trivial, 2)} of the trivial endpoint: "
            "the gap to the database ceiling is the application's work per payment (ORM, "
            "signals, audit and outbox rows, idempotency) and its round trips."
        )
    load = results["load_average_start"][0], results["load_average_end"][0]
    cores = results["machine"]["cores"]
    if max(load) > cores:
        lines.append(
            f"- Load average {load[0]:.1f} at start and {load[1]:.1f} at end on "
            f"{cores} cores: other work competed for the CPU during this run."
        )
    return lines


def _runs_section(results: dict) -> list[str]:
    lines = [
        "",
        "## Every run",
        "",
        "| phase | run | req/s | P50 | P99 | non-2xx / errors | load-generator CPU "
        "| deadlocks | cert failures | flow control paused (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in ("single", "galera"):
        for kind, runs in results.get(phase, {}).get("runs", {}).items():
            for number, run in enumerate(runs, 1):
                latency = run.get("latency_ms", {})
                bad = sum(c for s, c in run.get("statuses", {}).items() if not s.startswith("2"))
                errors = sum(run.get("errors", {}).values())
                counters = run.get("server_counters", {})
                cpu = run.get("loadgen_cpu_fraction")
                if cpu is None and "replayer_cpu_seconds" in run:
                    cpu = (
                        run["replayer_cpu_seconds"] / results["settings"]["plan"]["closed_seconds"]
                    )
                lines.append(
                    f"| {phase} | {kind} #{number} | {_fmt(run.get('throughput'))} | "
                    f"{_fmt(latency.get('p50'))} | {_fmt(latency.get('p99'))} | "
                    f"{bad} / {errors} | {_fmt(cpu, 2)} cores | "
                    f"{_fmt(counters.get('Innodb_deadlocks'))} | "
                    f"{_fmt(counters.get('wsrep_local_cert_failures'))} | "
                    f"{_fmt(counters.get('wsrep_flow_control_paused_ns', 0) / 1e6)} |"
                )
        retries = results.get(phase, {}).get("retries")
        if retries is not None:
            lines.append(
                f"\n{phase}: `payflow.platform.db.atomic` retries over the whole phase, "
                "summed "
                f"over the gunicorn workers: {retries or 'none'}\n"
            )
    for number, run in enumerate(results.get("relay", {}).get("runs", []), 1):
        lines.append(
            f"- relay pair #{number}: relay {_fmt(run['relay']['events_per_second'])} "
            f"ev/s ({run['relay']['published']} published, {run['relay']['left']} "
            f"left), raw {_fmt(run['raw']['events_per_second'])} ev/s"
        )
    for number, run in enumerate(results.get("audit", {}).get("runs", []), 1):
        lines.append(
            f"- audit pair #{number}: verify {_fmt(run['verify_rows_per_second'])} "
            f"entries/s, raw SHA-256 {_fmt(run['raw_rows_per_second'])} entries/s "
            f"({run['bytes'] / run['rows']:.0f} bytes/entry)"
        )
    state = results.get("single", {}).get("audit_log")
    if state:
        lines.append(
            f"- audit log after the single-server payment phase: {state['entries']} "
            f"entries, {state['leaves']} leaves, {state['checkpoints']} checkpoints "
            f"(the last at size {state['checkpoint_size']}), {state['unsequenced']} "
            f"not sequenced, sequencer lag {_fmt(state['lag_seconds'], 2)} s"
        )
    return lines


def _profile_section(results: dict) -> list[str]:
    prof = results.get("profile", {})
    lines = ["", "## Profile of the payment path", ""]
    if not prof.get("available"):
        return [*lines, prof.get("note", "not profiled")]
    lines += [
        f"py-spy, {prof['workers']} gunicorn workers, {prof['samples']} samples during a "
        "closed-loop payment run (an extra run, not one of the figures). Inclusive share "
        "of samples by area:",
        "",
        "| area | share |",
        "|---|---|",
    ]
    lines += [f"| {row['name']} | {row['share']:.1%} |" for row in prof["categories"]]
    lines += ["", "Top functions by self time:", "", "| function | self |", "|---|---|"]
    lines += [f"| `{row['name']}` | {row['share']:.1%} |" for row in prof["top_self"]]
    lines += ["", "Top functions by inclusive time:", "", "| function | inclusive |", "|---|---|"]
    lines += [f"| `{row['name']}` | {row['share']:.1%} |" for row in prof["top_inclusive"]]
    return lines


def _settings_section(results: dict) -> list[str]:
    return [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(results["settings"], indent=1),
        "```",
        "",
        f"A payment issues {results.get('payment_sql', {}).get('statements', '—')} SQL "
        f"statements in {results.get('payment_sql', {}).get('transactions', '—')} "
        "transactions (captured from the stack, replayed for the database ceiling).",
    ]


def main(argv: list[str]) -> int:
    """Render the Markdown and plots again from a results JSON: ``python -m bench.report F``."""
    path = Path(argv[1])
    results = json.loads(path.read_text())
    stamp = path.stem
    results["figures"] = figures(results)
    results["goals"] = goals(results["figures"])
    path.write_text(json.dumps(results, indent=1, default=str))
    plots = plot(results, path.parent, stamp)
    (path.parent / f"{stamp}.md").write_text(markdown(results, [p.name for p in plots]))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
