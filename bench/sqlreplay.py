"""The database ceiling: a payment's own SQL, replayed with MySQLdb and no Django.

``bench.djtasks capture_sql`` records every statement one real payment issued through the
whole stack (with its parameters, and which of the payment's transactions it ran in). Here
each "raw payment" replays those statements in the same order and the same transactions
(``BEGIN … COMMIT``; statements outside a transaction in autocommit), reading every result.

Only what the unique constraints and the audit chain require is changed per replay:

- a UUID that a statement inserts as a new row's ``id`` (transaction, outbox events,
  journal entry) becomes a fresh UUID everywhere it appears in that replay;
- the idempotency key and external reference (they contain ``capture-``) become unique;
- audit entries: each hash the payment wrote (an entry's ``hash``, the same value as the
  ``prev_hash`` of the object's next entry and in the row's ``audit_hash``) becomes fresh
  random bytes everywhere it appears in that replay, so every replayed object has its own
  chain as a new payment would (the unique ``hash`` and (object, ``prev_hash``) hold);
  computing real hashes is the application's CPU, not the database's. Any other 64-hex
  value a statement writes first (the idempotency key's digest) is renewed the same way;
- the idempotency record's id (``RETURNING``) replaces the captured one in its updates.

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
from typing import Any

import MySQLdb
import uuid_utils.compat

UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HASH_TEXT = re.compile(r"^[0-9a-f]{64}$")
GENESIS_HASH = "0" * 64
IDEMPOTENCY_INSERT = "INSERT INTO `payflow_idempotencyrecord`"
IDEMPOTENCY_ID = "`payflow_idempotencyrecord`.`id` = %s"


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "bytes" in value:
        return bytes.fromhex(value["bytes"])
    if isinstance(value, dict) and "datetime" in value:
        return value["datetime"]
    return value


INSERT_COLUMNS = re.compile(r"INSERT INTO `\w+` \(([^)]*)\) VALUES")


def new_row_ids(statements: list[dict]) -> set[str]:
    """UUIDs first seen as the ``id`` of a row an INSERT creates (wherever ``id`` is in
    the column list: audited rows put ``audit_hash`` first; in every row of a multi-row
    INSERT: a transaction's outbox rows are one statement)."""
    seen: set[str] = set()
    fresh: set[str] = set()
    for statement in statements:
        params = statement["params"] or []
        columns = INSERT_COLUMNS.match(statement["sql"])
        names = [name.strip() for name in columns[1].split(",")] if columns else []
        if "`id`" in names:
            at, width = names.index("`id`"), len(names)
            for row_id in params[at::width]:
                if isinstance(row_id, str) and row_id not in seen and UUID_TEXT.match(row_id):
                    fresh.add(row_id)
        seen.update(p for p in params if isinstance(p, str))
    return fresh


def new_hashes(statements: list[dict]) -> set[str]:
    """64-hex values (audit hashes, digests) first seen in a statement that writes: an
    INSERT or an UPDATE. One first seen in a read looks up an existing row: kept."""
    seen: set[str] = set()
    fresh: set[str] = set()
    for statement in statements:
        writes = statement["sql"].startswith(("INSERT", "UPDATE"))
        for value in statement["params"] or []:
            if not isinstance(value, str) or value in seen:
                continue
            seen.add(value)
            if writes and value != GENESIS_HASH and HASH_TEXT.match(value):
                fresh.add(value)
    return fresh


def placeholder_index(sql: str, marker: str) -> int | None:
    """The position of the parameter that ``marker`` (containing one ``%s``) takes."""
    at = sql.find(marker)
    return None if at < 0 else sql[:at].count("%s")


class Replayer:
    def __init__(self, statements: list[dict]) -> None:
        self.statements = statements
        self.fresh_ids = new_row_ids(statements)
        self.fresh_hashes = new_hashes(statements)
        # The idempotency record's id in the statements that name it (after the insert).
        self.record_id_at = [
            placeholder_index(statement["sql"], IDEMPOTENCY_ID) for statement in statements
        ]

    def run_one(self, connection: MySQLdb.Connection, number: int) -> None:
        # time-ordered (UUIDv7), as the application's ids are: the relay reads a
        # partition's events in id order, and random ids put an aggregate's later events
        # before its first one (a batch then holds them back, round after round)
        ids = {old: str(uuid_utils.compat.uuid7()) for old in self.fresh_ids}
        ids.update((old, random.randbytes(32).hex()) for old in self.fresh_hashes)
        unique = f"raw-{os.getpid()}-{threading.get_ident()}-{number}"
        record_id = None
        cursor = connection.cursor()
        in_transaction = None
        for statement, record_id_at in zip(self.statements, self.record_id_at, strict=True):
            transaction = statement["transaction"]
            if transaction != in_transaction:
                if in_transaction is not None:
                    connection.commit()
                if transaction is not None:
                    cursor.execute("BEGIN")
                in_transaction = transaction
            params = self._params(statement, ids, unique)
            if record_id_at is not None and record_id is not None:
                params[record_id_at] = record_id
            cursor.execute(statement["sql"], params)
            rows = cursor.fetchall()
            if statement["sql"].startswith(IDEMPOTENCY_INSERT) and rows:
                record_id = rows[0][0]
        if in_transaction is not None:
            connection.commit()
        cursor.close()

    def _params(self, statement, ids, unique) -> list[Any] | None:
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
                    value = re.sub(r"capture-[0-9a-z-]+", unique, value)
            params.append(value)
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
            except MySQLdb.Error as exc:  # counted by error number, never a silent stop
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
    return {
        "ok": len(latencies),
        "latencies_ms": latencies,
        "completions": completions,
        "errors": errors,
        "duration": spec["duration"],
        "cpu_seconds": cpu,
    }


def main(argv: list[str]) -> int:
    with open(argv[1]) as source:
        spec = json.load(source)
    with open(argv[2], "w") as out:
        json.dump(run(spec), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
