"""The database ceiling: a payment's own SQL, replayed with MySQLdb and no Django.

``bench.djtasks capture_sql`` records every statement one real payment issued through the
whole stack (with its parameters, and which of the payment's transactions it ran in). Here
each "raw payment" replays those statements in the same order and the same transactions
(``BEGIN … COMMIT``; statements outside a transaction in autocommit), reading every result.

Only what the unique constraints and the audit chain require is changed per replay:

- a UUID that a statement inserts as a new row's ``id`` (transaction, outbox events,
  journal entry) becomes a fresh UUID everywhere it appears in that replay;
- the idempotency key and external reference (they contain ``capture-``) become unique;
- audit lanes: each lane the captured payment wrote to maps to a random lane per replay,
  as a fresh transaction id would; the lane head read ``FOR UPDATE`` supplies ``seq + 1``
  and ``prev_hash`` for the row and the head update, as the application does. The new
  entry's hash is random bytes: computing it is the application's CPU, not the database's.

Run: ``python -m bench.sqlreplay SPEC.json OUT.json`` (connection, statements, threads,
duration); several such processes run at once for the payment's concurrency.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import sys
import threading
import time
import uuid
from typing import Any

import MySQLdb

UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LANES = 16


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "bytes" in value:
        return bytes.fromhex(value["bytes"])
    if isinstance(value, dict) and "datetime" in value:
        return value["datetime"]
    return value


def new_row_ids(statements: list[dict]) -> set[str]:
    """UUIDs first seen as the ``id`` of a row an INSERT creates."""
    seen: set[str] = set()
    fresh: set[str] = set()
    for statement in statements:
        params = statement["params"] or []
        first = params[0] if params else None
        inserts_id = re.match(r"INSERT INTO `\w+` \(`id`,", statement["sql"]) is not None
        if inserts_id and isinstance(first, str) and first not in seen and UUID_TEXT.match(first):
            fresh.add(first)
        seen.update(p for p in params if isinstance(p, str))
    return fresh


class Replayer:
    def __init__(self, statements: list[dict]) -> None:
        self.statements = statements
        self.fresh_ids = new_row_ids(statements)

    def run_one(self, connection: MySQLdb.Connection, number: int) -> None:
        ids = {old: str(uuid.uuid4()) for old in self.fresh_ids}
        unique = f"raw-{os.getpid()}-{threading.get_ident()}-{number}"
        lanes: dict[int, int] = {}
        head: dict[int, tuple[int, str]] = {}
        cursor = connection.cursor()
        in_transaction = None
        for statement in self.statements:
            transaction = statement["transaction"]
            if transaction != in_transaction:
                if in_transaction is not None:
                    connection.commit()
                if transaction is not None:
                    cursor.execute("BEGIN")
                in_transaction = transaction
            params = self._params(statement, ids, unique, lanes, head)
            cursor.execute(statement["sql"], params)
            rows = cursor.fetchall()
            if "FROM `audit_lanehead`" in statement["sql"] and rows:
                lane, seq, digest = rows[0]
                head[lane] = (seq + 1, digest)
        if in_transaction is not None:
            connection.commit()
        cursor.close()

    def _params(self, statement, ids, unique, lanes, head) -> list[Any] | None:
        raw = statement["params"]
        if raw is None:
            return None
        params = []
        for value in raw:
            value = _decode(value)
            if isinstance(value, str):
                if value in ids:
                    value = ids[value]
                elif "capture-" in value:
                    value = re.sub(r"capture-[0-9-]+", unique, value)
            params.append(value)
        sql = statement["sql"]
        if "FROM `audit_lanehead`" in sql:
            params[0] = lanes.setdefault(params[0], random.randrange(LANES))
        elif sql.startswith("INSERT INTO `audit_auditentry`"):
            lane = lanes[params[0]]
            seq, prev = head[lane]
            params[0:4] = [lane, seq, prev, random.randbytes(32).hex()]
            self._last_audit = (lane, seq, params[3])
        elif sql.startswith("UPDATE `audit_lanehead`"):
            lane, seq, digest = self._last_audit
            params = [seq, digest, lane]
        elif sql.startswith("INSERT INTO `outbox_outboxevent`") and params[2] == "audit_lane":
            lane, seq, _ = self._last_audit
            params[3] = params[8] = f"lane-{lane}"
            params[4] = seq
        return params


def connect(options: dict) -> MySQLdb.Connection:
    connection = MySQLdb.connect(
        **options,
        charset="utf8mb4",
        autocommit=True,
        init_command="SET SESSION sql_mode='STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,"
        "NO_ENGINE_SUBSTITUTION,NO_ZERO_DATE,NO_ZERO_IN_DATE'; "
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )
    return connection


def run(spec: dict) -> dict:
    statements = spec["statements"]
    stop_at = time.perf_counter() + spec["warmup"] + spec["duration"]
    counted_from = time.perf_counter() + spec["warmup"]
    latencies: list[float] = []
    completions: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def worker(index: int) -> None:
        replayer = Replayer(statements)  # per thread: it keeps per-replay state
        connection = connect(spec["connection"])
        number = 0
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                break
            number += 1
            try:
                replayer.run_one(connection, number)
            except MySQLdb.OperationalError as exc:
                connection.rollback()
                with lock:
                    errors[str(exc.args[0])] = errors.get(str(exc.args[0]), 0) + 1
                continue
            done = time.perf_counter()
            if began >= counted_from:
                with lock:
                    latencies.append((done - began) * 1000)
                    completions.append(done - counted_from)
        connection.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"ok": len(latencies), "latencies_ms": latencies, "completions": completions,
            "errors": errors, "duration": spec["duration"], "cpu_seconds": cpu}


def main(argv: list[str]) -> int:
    with open(argv[1]) as source:
        spec = json.load(source)
    with open(argv[2], "w") as out:
        json.dump(run(spec), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
