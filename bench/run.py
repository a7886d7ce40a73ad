"""``make bench`` / ``make bench-quick``: set everything up, measure, write the report.

    .venv/bin/python -m bench.run [--quick] [--skip-galera] [--out bench/results]

Every process it starts (Kafka mock broker, gunicorn, relay loop, audit sequencer, Galera
nodes) is stopped before it exits, also on error. Databases are its own (``payflow_bench*``,
or ``$BENCH_DATABASE*``); the Celery broker is Redis db 12 (flushed at the end); state lives
under ``/tmp/payflow-bench``. See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import MySQLdb

from audit import tlog
from bench import profile, report, stats

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WORK = Path("/tmp/payflow-bench")
GALERA_DIR = Path("/tmp/bench-galera")
# The databases are the bench's own: BENCH_DATABASE names them (default payflow_bench, and
# <name>_relay, <name>_audit beside it), so two checkouts on one server need not share.
MAIN_DB = os.environ.get("BENCH_DATABASE", "") or "payflow_bench"
if not MAIN_DB.replace("_", "").isalnum() or len(MAIN_DB) > 50:
    raise SystemExit(f"BENCH_DATABASE must be letters, digits and _ (at most 50): {MAIN_DB!r}")
RELAY_DB = f"{MAIN_DB}_relay"
AUDIT_DB = f"{MAIN_DB}_audit"
# The audit log's origin (the name in its signed checkpoints) for the bench's fresh key pair.
LOG_ORIGIN = "payflow.bench/audit"
# The transparency log's tables (audit/models.py), emptied before the audit seed. The
# triggers of audit/migrations/0008_transparency_log.py refuse UPDATE and DELETE on them
# (entries: DELETE only under a verified segment), not TRUNCATE, which fires no trigger.
AUDIT_LOG_TABLES = (
    "audit_cosignature",
    "audit_checkpoint",
    "audit_lognode",
    "audit_logleaf",
    "audit_logpublication",
    "audit_archivesegment",
    "audit_retentionpurge",
    "audit_auditentry",
    "audit_archivelease",
    "audit_verificationrun",
)
REDIS_DB = 12
SINGLE = {"host": "127.0.0.1", "port": 3306, "user": "root"}
COUNTERS = (
    "Innodb_deadlocks",
    "Innodb_row_lock_waits",
    "Com_commit",
    "wsrep_local_cert_failures",
    "wsrep_local_bf_aborts",
    "wsrep_flow_control_sent",
    "wsrep_flow_control_recv",
    "wsrep_flow_control_paused_ns",
)


@dataclass
class Plan:
    name: str
    repeats: int
    closed_seconds: float
    open_seconds: float
    warmup: float
    concurrency: int
    relay_rows: int
    audit_rows: int
    galera_repeats: int
    profile_seconds: float


QUICK = Plan(
    "quick",
    repeats=2,
    closed_seconds=4,
    open_seconds=5,
    warmup=1,
    concurrency=12,
    relay_rows=10_000,
    audit_rows=50_000,
    galera_repeats=2,
    profile_seconds=4,
)
FULL = Plan(
    "full",
    repeats=3,
    closed_seconds=10,
    open_seconds=15,
    warmup=2,
    concurrency=12,
    relay_rows=100_000,
    audit_rows=1_000_000,
    galera_repeats=3,
    profile_seconds=10,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- processes ------------------------------------------------------------------------------


class Processes:
    """Everything started here, stopped in reverse order."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict, **kwargs) -> subprocess.Popen:
        log_file = open(WORK / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 30) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.started = [(n, p) for n, p in self.started if p is not process]

    def stop_all(self) -> None:
        for _, process in reversed(list(self.started)):
            self.stop(process)


def django_env(database_url: str, secrets_env: dict, extra: dict | None = None) -> dict:
    # The shell's servers and audit settings are not the bench's (nor a signing key: only
    # the sequencer gets one, sequencer_env).
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "AUDIT_"))
    }
    env.update(secrets_env)
    env.update(
        {
            "PAYFLOW_ENV_FILE": "",
            "DEBUG": "False",
            # The load generator speaks plain HTTP to loopback: no TLS proxy in front.
            "SECURE_SSL_REDIRECT": "False",
            "TLS_PROXY": "False",
            "DATABASE_URL": database_url,
            "PAYFLOW_VAR_DIR": str(WORK / "var"),
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "KAFKA_BOOTSTRAP_SERVERS": "embedded",
            "KAFKA_DEV_BOOTSTRAP_FILE": str(WORK / "var" / "kafka-bootstrap"),
            "API_THROTTLE_RATE": "1000000/second",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra or {})
    return env


def fresh_secrets() -> dict:
    """The application's secrets, fresh for this run, and the audit log's key pair: the
    public key for every process (settings require it), the signer key written to a file
    that only the sequencer's processes are given (``sequencer_env``), as ``make run`` does."""

    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    signer = tlog.generate_signer_key(LOG_ORIGIN)
    key_file = WORK / "audit-signing.key"
    key_file.touch(mode=0o600)
    key_file.write_text(signer + "\n")
    return {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "VAULT_KEYS": f"1:{key()}",
        "CARD_FINGERPRINT_KEY": key(),
        "AUDIT_PUBLIC_KEY": tlog.Signer(signer).verifier_key(),
    }


def sequencer_env(env: dict) -> dict:
    """``env`` plus the log's signer key: for the sequencer (and the seed that runs it)."""
    return {**env, "AUDIT_SIGNING_KEY_FILE": str(WORK / "audit-signing.key")}


def djtask(env: dict, step: str, args: dict | None = None, timeout: float = 1800) -> dict:
    result = subprocess.run(
        [PYTHON, "-m", "bench.djtasks", step, json.dumps(args or {})],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.djtasks {step} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- databases --------------------------------------------------------------------------


def sql(server: dict, statement: str, database: str | None = None) -> list[tuple]:
    options = {**server, **({"database": database} if database else {})}
    connection = MySQLdb.connect(**options)
    try:
        cursor = connection.cursor()
        cursor.execute(statement)
        return list(cursor.fetchall())
    finally:
        connection.close()


def recreate_database(server: dict, name: str) -> None:
    sql(server, f"DROP DATABASE IF EXISTS {name}")
    sql(server, f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def load_dump(server: dict, database: str, dump: Path) -> None:
    recreate_database(server, database)
    with dump.open("rb") as source:
        subprocess.run(
            ["mariadb", "-uroot", "-h", server["host"], "-P", str(server["port"]), database],
            stdin=source,
            check=True,
        )


def server_counters(server: dict) -> dict[str, float]:
    names = ", ".join(f"'{name}'" for name in COUNTERS)
    rows = sql(server, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    return {name: float(value) for name, value in rows}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counter_delta(before: dict, after: dict) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0) for name in after}


def url_for(server: dict, database: str) -> str:
    return f"mysql://root@{server['host']}:{server['port']}/{database}"


# --- the web server ---------------------------------------------------------------------------


class Web:
    def __init__(self, procs: Processes, env: dict, name: str) -> None:
        self.port = free_port()
        self.counters_dir = WORK / f"counters-{name}"
        shutil.rmtree(self.counters_dir, ignore_errors=True)
        self.counters_dir.mkdir(parents=True)
        env = {**env, "BENCH_COUNTERS_DIR": str(self.counters_dir)}
        self.procs = procs
        self.process = procs.start(
            f"gunicorn-{name}",
            [
                str(Path(PYTHON).parent / "gunicorn"),
                "payflow.wsgi:application",
                "--config",
                "python:bench.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            env,
        )
        self._wait()

    def _wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited; see /tmp/payflow-bench/gunicorn-*.log")
            time.sleep(0.3)
        raise TimeoutError("gunicorn did not answer /healthz")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def cpu_seconds(self) -> float:
        """CPU time of the gunicorn master and its workers so far: the application's."""
        return sum(process_cpu_seconds(pid) for pid in [self.process.pid, *self.worker_pids()])

    def stop(self) -> dict[str, float]:
        self.procs.stop(self.process)
        totals: dict[str, float] = {}
        for path in self.counters_dir.glob("retries-*.json"):
            for name, value in json.loads(path.read_text()).items():
                totals[name] = totals.get(name, 0) + value
        return totals


# --- load ---------------------------------------------------------------------------------------


def loadgen(spec: dict) -> dict:
    spec_path, out_path = WORK / "loadgen-spec.json", WORK / "loadgen-out.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        [PYTHON, "-m", "bench.loadgen", str(spec_path), str(out_path)],
        cwd=ROOT,
        check=True,
        timeout=spec["duration"] + spec.get("warmup", 0) + 120,
    )
    return json.loads(out_path.read_text())


def unique_letters() -> str:
    """The clock in nanoseconds written in letters (unique per run, never a digit run)."""
    number, letters = time.time_ns(), ""
    while number:
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
    return letters


def http_spec(web: Web, seed: dict, kind: str, **options) -> dict:
    headers = {"Authorization": f"Bearer {seed['api_key']}", "Accept": "application/json"}
    spec = {"host": "127.0.0.1", "port": web.port, "headers": headers, **options}
    if kind == "ping":
        return {**spec, "method": "GET", "path": "/v1/ping"}
    body = json.dumps(
        {
            "amount": 1999,
            "currency": "EUR",
            "token": seed["token"],
            "cvc": "123",
            "capture": True,
            "external_reference": "order-{n}",
        },
        separators=(",", ":"),
    )
    headers["Content-Type"] = "application/json"
    # Letters, not the clock's digits: a long digit run could pass the Luhn check and be
    # refused as a card number in the Idempotency-Key (bench.djtasks.unique_letters).
    prefix = f"bench-{kind}-{unique_letters()}"
    return {
        **spec,
        "method": "POST",
        "path": "/v1/payments",
        "body": body,
        "idempotency_prefix": prefix,
    }


def summarize_http(result: dict, started_at: str) -> dict:
    latencies = result.pop("latencies_ms")
    completions = result.pop("completions")
    return {
        **result,
        "started_at": started_at,
        "latency_ms": stats.summary(latencies),
        "per_second": stats.per_second(completions, 0, result["duration"]),
        "histogram": report.histogram(latencies),
    }


#: The test acquirer (ledger.simulator) keeps its books in the same database, in its own
#: transaction, as a real acquirer does behind its network call: counted apart.
ACQUIRER_TABLE = "ledger_simulatedoperation"
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def payment_sql_counts(statements: list[dict]) -> dict[str, int]:
    """A payment's statements and transactions (savepoints are not statements of work), and
    the test acquirer's apart (as tests/payflow/api/test_write_path_budget.py counts)."""
    acquirer_transactions = {s["transaction"] for s in statements if ACQUIRER_TABLE in s["sql"]} - {
        None
    }
    work = [s for s in statements if not s["sql"].startswith(CONTROL)]
    ours = [s for s in work if s["transaction"] not in acquirer_transactions]
    return {
        "statements": len(ours),
        "transactions": len({s["transaction"] for s in ours} - {None}),
        "acquirer_statements": len(work) - len(ours),
        "acquirer_transactions": len(acquirer_transactions),
    }


def database_pids() -> list[int]:
    """The MariaDB server processes on this machine (the single server, or the Galera
    nodes while they run): their CPU is the database's share of a request."""
    found = subprocess.run(["pidof", "mariadbd", "mysqld"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def database_cpu_seconds(pids: list[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


def run_http(web: Web, seed: dict, kind: str, server: dict, **options) -> dict:
    before = server_counters(server)
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    db_pids = database_pids()
    db_before = database_cpu_seconds(db_pids)
    cpu_before, wall_before = web.cpu_seconds(), time.perf_counter()
    result = loadgen(http_spec(web, seed, kind, **options))
    app_cpu = web.cpu_seconds() - cpu_before
    db_cpu = database_cpu_seconds(db_pids) - db_before
    wall = time.perf_counter() - wall_before
    summary = summarize_http(result, started_at)
    # Warm-up requests included on both sides: every request sent costs the server.
    summary["app_cpu_seconds"] = app_cpu
    summary["app_cpu_cores"] = app_cpu / wall
    summary["app_cpu_ms_per_request"] = 1000 * app_cpu / max(result["sent"], 1)
    # The database server's CPU over the run (process accounting of mariadbd), per request.
    summary["db_cpu_seconds"] = db_cpu
    summary["db_cpu_ms_per_request"] = 1000 * db_cpu / max(result["sent"], 1)
    summary["ended_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    summary["server_counters"] = counter_delta(before, server_counters(server))
    return summary


def run_raw_sql(statements: list, server: dict, database: str, plan: Plan) -> dict:
    """The captured statements at the payment's concurrency: two processes of threads."""
    processes, outputs = [], []
    before = server_counters(server)
    share = [plan.concurrency // 2, plan.concurrency - plan.concurrency // 2]
    for index, threads in enumerate(share):
        spec = {
            "statements": statements,
            "threads": threads,
            "duration": plan.closed_seconds,
            "warmup": plan.warmup,
            "connection": {**server, "database": database},
        }
        spec_path, out_path = WORK / f"replay-{index}.json", WORK / f"replay-out-{index}.json"
        spec_path.write_text(json.dumps(spec))
        outputs.append(out_path)
        processes.append(
            subprocess.Popen(
                [PYTHON, "-m", "bench.sqlreplay", str(spec_path), str(out_path)], cwd=ROOT
            )
        )
    for process in processes:
        if process.wait(timeout=plan.closed_seconds + 120) != 0:
            raise RuntimeError("bench.sqlreplay failed")
    parts = [json.loads(path.read_text()) for path in outputs]
    latencies = [value for part in parts for value in part["latencies_ms"]]
    errors: dict[str, int] = {}
    for part in parts:
        for code, count in part["errors"].items():
            errors[code] = errors.get(code, 0) + count
    ok = sum(part["ok"] for part in parts)
    return {
        "ok": ok,
        "throughput": ok / plan.closed_seconds,
        "errors": errors,
        "latency_ms": stats.summary(latencies),
        "replayer_cpu_seconds": sum(part["cpu_seconds"] for part in parts),
        "server_counters": counter_delta(before, server_counters(server)),
    }


# --- phases -----------------------------------------------------------------------------------


def payment_phase(
    plan: Plan,
    web: Web,
    seed: dict,
    server: dict,
    env: dict,
    procs: Processes,
    *,
    statements: list | None,
    with_trivial: bool,
    repeats: int,
) -> dict:
    """Closed loop (payment / trivial / raw SQL alternately), then open loop at 70%."""
    closed = {
        "concurrency": plan.concurrency,
        "duration": plan.closed_seconds,
        "warmup": plan.warmup,
        "mode": "closed",
    }
    log("warm-up")
    loadgen(http_spec(web, seed, "payment", **{**closed, "duration": 2, "warmup": 0}))
    relay_loop = None  # the relay process runs for the lag (open-loop) runs only
    # The full write path: the sequencer appends the payments' entries to the log, signs a
    # checkpoint every AUDIT_CHECKPOINT_INTERVAL and publishes to Kafka, as in production.
    sequencer = procs.start(
        f"audit-sequencer-{web.port}", [PYTHON, "manage.py", "audit_sequencer"], sequencer_env(env)
    )
    phase_began = time.perf_counter()
    background_cpu: dict[str, float] = {}
    runs: dict[str, list] = {"payment": [], "trivial": [], "raw_sql": [], "open": []}
    try:
        for repeat in range(repeats):
            order = ["payment", "trivial", "raw_sql"]
            if repeat % 2:
                order.reverse()
            for kind in order:
                if kind == "trivial" and not with_trivial:
                    continue
                if kind == "raw_sql" and statements is None:
                    continue
                log(f"closed loop {kind} #{repeat + 1}")
                if kind == "raw_sql":
                    runs[kind].append(run_raw_sql(statements, server, MAIN_DB, plan))
                else:
                    name = "ping" if kind == "trivial" else "payment"
                    runs[kind].append(run_http(web, seed, name, server, **closed))
        maximum = stats.median(run["throughput"] for run in runs["payment"])
        rate = round(0.7 * maximum, 1)
        # The relay as in production (manage.py outbox_relay), from here on only: it does
        # not compete with the closed-loop runs. It drains their backlog first, so the lag
        # runs start with an empty outbox.
        relay_loop = procs.start(
            f"outbox-relay-{web.port}", [PYTHON, "manage.py", "outbox_relay"], env
        )
        drained = time.monotonic() + 300
        while djtask(env, "outbox_pending", {})["pending"] and time.monotonic() < drained:
            time.sleep(0.5)
        for repeat in range(repeats):
            log(f"open loop payment at {rate}/s #{repeat + 1}")
            runs["open"].append(
                run_http(
                    web,
                    seed,
                    "payment",
                    server,
                    mode="open",
                    rate=rate,
                    duration=plan.open_seconds,
                    concurrency=0,
                )
            )
        time.sleep(2)  # let the relay and the sequencer catch up with the last events
    finally:
        phase_wall = time.perf_counter() - phase_began
        for name, process in (("relay", relay_loop), ("sequencer", sequencer)):
            if process is None:
                continue
            background_cpu[name] = process_cpu_seconds(process.pid)
            procs.stop(process)
    if sequencer.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(
            "the audit sequencer failed; see /tmp/payflow-bench/audit-sequencer-*.log"
        )
    lag = []
    for run in runs["open"]:
        window = djtask(env, "relay_lag", {"since": run["started_at"], "until": run["ended_at"]})
        run["outbox_lag_ms"] = stats.summary(window["lags_ms"])
        run["outbox_unpublished"] = window["unpublished"]
        lag.append(run["outbox_lag_ms"].get("p99", float("nan")))
    return {
        "runs": runs,
        "max_throughput": maximum,
        "open_rate": rate,
        "lag_p99_ms_runs": lag,
        "audit_log": djtask(env, "audit_log_state"),
        "background_cpu_cores": {name: cpu / phase_wall for name, cpu in background_cpu.items()},
    }


def profile_phase(plan: Plan, web: Web, seed: dict) -> dict:
    log("profiling the payment path with py-spy")
    spec = http_spec(
        web,
        seed,
        "payment",
        mode="closed",
        concurrency=plan.concurrency,
        duration=plan.profile_seconds,
        warmup=0,
    )
    return profile.record_during(
        web.worker_pids(), plan.profile_seconds + 1, lambda: loadgen(spec), WORK / "profile"
    )


def relay_phase(plan: Plan, env_main: dict, secrets_env: dict, dump: Path) -> dict:
    log(f"relay: backlog of {plan.relay_rows} events")
    load_dump(SINGLE, RELAY_DB, dump)
    env = django_env(url_for(SINGLE, RELAY_DB), secrets_env)
    djtask(env, "relay_seed", {"rows": plan.relay_rows, "source": {**SINGLE, "database": MAIN_DB}})
    payloads = WORK / "relay-payloads.jsonl"
    djtask(env, "relay_payloads", {"out": str(payloads)})
    bootstrap = (WORK / "var" / "kafka-bootstrap").read_text().strip()
    runs = []
    for repeat in range(plan.repeats):
        pair = {}
        for kind in ["relay", "raw"] if repeat % 2 == 0 else ["raw", "relay"]:
            log(f"relay {kind} #{repeat + 1}")
            if kind == "relay":
                djtask(env, "relay_reset")
                pair["relay"] = djtask(env, "relay_drain")
            else:
                out = subprocess.run(
                    [PYTHON, "-m", "bench.rawproducer", bootstrap, str(payloads)],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                )
                pair["raw"] = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(pair)
    return {"rows": plan.relay_rows, "runs": runs}


def truncate(server: dict, database: str, tables: tuple[str, ...]) -> None:
    """Empty ``tables`` (TRUNCATE fires no DELETE trigger; foreign keys between them, e.g.
    cosignature → checkpoint, would refuse it, so their checks are off for this session)."""
    connection = MySQLdb.connect(**server, database=database)
    try:
        cursor = connection.cursor()
        cursor.execute("SET SESSION foreign_key_checks = 0")
        for table in tables:
            cursor.execute(f"TRUNCATE TABLE {table}")
    finally:
        connection.close()


def audit_phase(plan: Plan, secrets_env: dict, dump: Path) -> dict:
    log(f"audit: seeding {plan.audit_rows} entries copied from the payments' entries")
    load_dump(SINGLE, AUDIT_DB, dump)
    env = django_env(url_for(SINGLE, AUDIT_DB), secrets_env)
    truncate(SINGLE, AUDIT_DB, AUDIT_LOG_TABLES)
    started = time.perf_counter()
    seeded = djtask(
        sequencer_env(env),
        "audit_seed",
        {"rows": plan.audit_rows, "source": {**SINGLE, "database": MAIN_DB}},
    )
    seed_seconds = time.perf_counter() - started
    log("audit: verification vs raw SHA-256")
    verify = djtask(env, "audit_verify", {"repeats": plan.repeats})
    archive = djtask(env, "audit_archive")
    return {
        "rows": plan.audit_rows,
        "seed_seconds": seed_seconds,
        "seed": seeded,
        "runs": verify["runs"],
        "archive": archive,
    }


def galera_phase(plan: Plan, procs: Processes, secrets_env: dict, dump: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.infra.galera import GaleraCluster

    log("galera: starting a 3-node cluster")
    shutil.rmtree(GALERA_DIR, ignore_errors=True)
    cluster = GaleraCluster(GALERA_DIR)
    try:
        cluster.start()
        node = {"host": "127.0.0.1", "port": cluster.nodes[0].port, "user": "root"}
        load_dump(node, MAIN_DB, dump)
        env = django_env(url_for(node, MAIN_DB), secrets_env, {"DATABASE_WSREP_SYNC_WAIT": "1"})
        seed = djtask(env, "seed", {"name": "Bench Shop (Galera)"})
        version = sql(node, "SHOW GLOBAL STATUS LIKE 'wsrep_provider_version'")[0][1]
        web = Web(procs, env, "galera")
        try:
            result = payment_phase(
                plan,
                web,
                seed,
                node,
                env,
                procs,
                statements=None,
                with_trivial=False,
                repeats=plan.galera_repeats,
            )
        finally:
            result["retries"] = web.stop()
        result["provider_version"] = version
        result["cluster_size"] = cluster.size
        return result
    finally:
        cluster.stop()


# --- machine ----------------------------------------------------------------------------------


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(total_kb / 2**20, 1),
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
    }


def versions() -> dict:
    import confluent_kafka
    import django
    import gunicorn

    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "mariadb": sql(SINGLE, "SELECT VERSION()")[0][0],
        "mysqlclient": ".".join(str(part) for part in MySQLdb.version_info[:3]),
        "librdkafka": confluent_kafka.libversion()[0],
        "confluent_kafka": confluent_kafka.version()[0],
        "gunicorn": gunicorn.__version__,
    }


def settings_recorded(plan: Plan) -> dict:
    variables = (
        "innodb_flush_log_at_trx_commit",
        "innodb_buffer_pool_size",
        "sync_binlog",
        "log_bin",
        "max_connections",
        "transaction_isolation",
    )
    names = ", ".join(f"'{name}'" for name in variables)
    server = dict(sql(SINGLE, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"))
    from bench import gunicorn_conf

    return {
        "plan": asdict(plan),
        "mariadb": server,
        "gunicorn": {
            "worker_class": gunicorn_conf.worker_class,
            "workers": gunicorn_conf.workers,
            "threads": gunicorn_conf.threads,
        },
        "django": {
            "DEBUG": False,
            "API_THROTTLE_RATE": "1000000/second (throttling on, never reached)",
            "ACQUIRER_LATENCY_SECONDS": 0,
            "CACHE": "locmem",
            "CELERY_BROKER_URL": f"redis db {REDIS_DB} (nothing is sent on the payment path)",
        },
        "payment": "POST /v1/payments, tokenized card 4242…, cvc, capture=true, "
        "unique Idempotency-Key per request",
        "trivial": "GET /v1/ping (API key authentication, throttle, DRF, full middleware)",
    }


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-galera", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    began = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "var").mkdir(parents=True)
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_start": os.getloadavg(),
        "versions": versions(),
        "settings": settings_recorded(plan),
    }
    procs = Processes()
    secrets_env = fresh_secrets()
    env = django_env(url_for(SINGLE, MAIN_DB), secrets_env)
    try:
        procs.start(
            "kafka",
            [
                PYTHON,
                "-m",
                "payflow.platform.kafka_mock",
                "--bootstrap-file",
                str(WORK / "var" / "kafka-bootstrap"),
            ],
            env,
        )
        log(f"database {MAIN_DB}: migrate")
        recreate_database(SINGLE, MAIN_DB)
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v0"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        dump = WORK / "schema.sql"
        with dump.open("wb") as out:
            subprocess.run(
                ["mysqldump", "-uroot", "-h127.0.0.1", "--triggers", "--routines", MAIN_DB],
                stdout=out,
                check=True,
            )
        seed = djtask(env, "seed")
        captured = djtask(env, "capture_sql", seed)
        results["payment_sql"] = payment_sql_counts(captured["statements"])
        web = Web(procs, env, "single")
        try:
            results["single"] = payment_phase(
                plan,
                web,
                seed,
                SINGLE,
                env,
                procs,
                statements=captured["statements"],
                with_trivial=True,
                repeats=plan.repeats,
            )
            results["profile"] = profile_phase(plan, web, seed)
        finally:
            results.setdefault("single", {})["retries"] = web.stop()
        results["relay"] = relay_phase(plan, env, secrets_env, dump)
        results["audit"] = audit_phase(plan, secrets_env, dump)
        if not args.skip_galera:
            results["galera"] = galera_phase(plan, procs, secrets_env, dump)
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], capture_output=True)
    results["load_average_end"] = os.getloadavg()
    results["wall_seconds"] = round(time.monotonic() - began, 1)
    paths = report.write(results, args.out)
    log(f"wrote {', '.join(str(path) for path in paths)} in {results['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
