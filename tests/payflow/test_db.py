"""payflow.platform.db.atomic against the real MariaDB server: retries, refusals, UUIDv7."""

import threading
import time
import uuid

import MySQLdb
import pytest
from django.db import OperationalError, connection, connections
from prometheus_client import REGISTRY

from payflow.platform import db

pytestmark = pytest.mark.django_db(transaction=True)


def retries(reason: str) -> float:
    value = REGISTRY.get_sample_value("payflow_db_transaction_retries_total", {"reason": reason})
    return value or 0.0


@pytest.fixture
def probe_table():
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS atomic_probe")
        cursor.execute("CREATE TABLE atomic_probe (id INT PRIMARY KEY, n INT NOT NULL)")
        cursor.execute("INSERT INTO atomic_probe VALUES (1, 0), (2, 0)")
    yield "atomic_probe"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS atomic_probe")


def read_counters() -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, n FROM atomic_probe ORDER BY id")
        return dict(cursor.fetchall())


def test_a_real_deadlock_is_retried_and_both_transactions_commit(probe_table):
    # given two transactions that lock the same two rows in opposite order
    barrier = threading.Barrier(2, timeout=10)
    calls = {"forward": 0, "backward": 0}
    errors = []

    def lock_in_order(name, first, second):
        @db.atomic
        def work():
            calls[name] += 1
            with connection.cursor() as cursor:
                cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = %s", [first])
                if calls[name] == 1:
                    barrier.wait()  # both hold their first row: the next step deadlocks
                cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = %s", [second])

        try:
            work()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    before = retries("deadlock_or_certification_failure")
    # when they run concurrently
    threads = [
        threading.Thread(target=lock_in_order, args=("forward", 1, 2)),
        threading.Thread(target=lock_in_order, args=("backward", 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then InnoDB chose a victim, the wrapper ran it again, and both effects are there once
    assert errors == []
    assert sorted(calls.values()) == [1, 2]
    assert retries("deadlock_or_certification_failure") == before + 1
    assert read_counters() == {1: 2, 2: 2}


def test_a_lock_wait_timeout_is_retried_once_the_lock_is_released(probe_table):
    # given another session holding the row lock until our first attempt has timed out
    # (released on that event, not on a timer: a loaded machine cannot reorder it)
    holder = MySQLdb.connect(**_raw_connection_options())
    holder.autocommit(False)
    holder.cursor().execute("UPDATE atomic_probe SET n = n + 100 WHERE id = 1")
    attempts = []

    @db.atomic
    def bump():
        attempts.append(time.monotonic())
        if len(attempts) == 2:
            holder.commit()  # the first attempt waited 1 s and gave up: release now
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = 1")

    before = retries("lock_wait_timeout")
    try:
        bump()
    finally:
        holder.close()

    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 1.0  # the first attempt waited out its timeout
    assert retries("lock_wait_timeout") == before + 1
    assert read_counters()[1] == 101


def test_retries_stop_after_the_configured_attempts_with_a_clear_error(probe_table, settings):
    settings.DB_RETRY_ATTEMPTS = 3
    settings.DB_RETRY_BASE_DELAY = 0.001
    calls = []

    @db.atomic
    def always_conflicts():
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = 1")
        raise OperationalError(1213, "Deadlock found when trying to get lock")

    with pytest.raises(db.TransactionRetriesExhausted, match="gave up after 3 attempts") as info:
        always_conflicts()

    assert len(calls) == 3
    assert info.value.errno == 1213
    assert read_counters()[1] == 0  # every attempt rolled back


def test_other_database_errors_are_not_retried(probe_table):
    calls = []

    @db.atomic
    def bad_sql():
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE atomic_probe SET no_such_column = 1")

    with pytest.raises(OperationalError) as info:
        bad_sql()
    assert db.mysql_errno(info.value) == 1054
    assert calls == [1]


def test_a_call_to_the_outside_world_inside_the_transaction_is_refused_and_never_retried(
    probe_table,
):
    # given a function that would call the acquirer from inside a transaction
    acquirer_calls, attempts = [], []

    @db.outside_transaction
    def call_acquirer():
        acquirer_calls.append(1)

    @db.atomic
    def capture_inside_transaction():
        attempts.append(1)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = 1")
        call_acquirer()

    # when it runs, then the guard refuses before the outside world is reached
    with pytest.raises(db.ExternalCallInTransaction, match="call_acquirer"):
        capture_inside_transaction()
    assert acquirer_calls == []
    assert attempts == [1]
    assert read_counters()[1] == 0
    # and outside a transaction the same call is allowed
    call_acquirer()
    assert acquirer_calls == [1]


def test_a_nested_atomic_leaves_the_retry_to_the_outermost_wrapper(probe_table, settings):
    settings.DB_RETRY_BASE_DELAY = 0.001
    inner_calls, outer_calls = [], []

    @db.atomic
    def inner():
        inner_calls.append(1)
        if len(inner_calls) == 1:
            raise OperationalError(1213, "Deadlock found when trying to get lock")

    @db.atomic
    def outer():
        outer_calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = 1")
        inner()

    outer()
    assert len(outer_calls) == 2
    assert len(inner_calls) == 2
    assert read_counters()[1] == 1


def test_on_commit_callbacks_of_a_rolled_back_attempt_do_not_run(probe_table, settings):
    settings.DB_RETRY_BASE_DELAY = 0.001
    from django.db import transaction

    notified, attempts = [], []

    @db.atomic
    def change_and_notify():
        attempts.append(1)
        transaction.on_commit(lambda: notified.append(len(attempts)))
        if len(attempts) == 1:
            raise OperationalError(1213, "Deadlock found when trying to get lock")

    change_and_notify()
    assert notified == [2]


def test_on_rollback_hooks_run_for_an_attempt_that_rolls_back_and_not_for_one_that_commits(
    probe_table, settings
):
    settings.DB_RETRY_BASE_DELAY = 0.001
    undone, attempts = [], []

    @db.atomic
    def change():
        attempts.append(1)
        db.on_rollback(lambda: undone.append(len(attempts)))
        if len(attempts) == 1:
            raise OperationalError(1213, "Deadlock found when trying to get lock")

    change()
    assert undone == [1]  # the first attempt's, before the second ran

    @db.atomic
    def fails():
        db.on_rollback(lambda: undone.append("failed"))
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        fails()
    assert undone == [1, "failed"]
    with pytest.raises(RuntimeError):
        db.on_rollback(lambda: None)  # outside payflow.platform.db.atomic


def _raw_connection_options() -> dict:
    options = connection.settings_dict
    return {
        "host": options["HOST"] or "127.0.0.1",
        "port": int(options["PORT"] or 3306),
        "user": options["USER"],
        "password": options["PASSWORD"],
        "database": options["NAME"],
    }


@pytest.mark.django_db(transaction=False)
def test_uuid7_has_version_7_variant_rfc_and_the_current_time():
    value = db.uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert abs(db.uuid7_time_ms(value) - time.time() * 1000) < 1000


@pytest.mark.django_db(transaction=False)
def test_uuid7_values_are_strictly_increasing_even_within_one_millisecond():
    values = [db.uuid7() for _ in range(20_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


@pytest.mark.django_db(transaction=False)
def test_uuid7_is_unique_across_threads():
    results: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(bucket):
        bucket.extend(db.uuid7() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = [value for bucket in results for value in bucket]
    assert len(set(merged)) == 20_000
    for bucket in results:
        assert bucket == sorted(bucket)


def test_after_commit_work_runs_once_where_its_first_item_was_queued_and_only_on_commit():
    from django.db import transaction

    calls = []

    def nudge(items):
        calls.append(("nudge", items))

    def flush_more(items):  # before-commit work that queues more after-commit work
        db.after_commit(nudge, "from-flush")

    @db.atomic
    def work(fail: bool = False):
        db.after_commit(nudge, 1)
        transaction.on_commit(lambda: calls.append("send"))  # e.g. the acquirer call
        db.after_commit(nudge, 2, using="default")  # the same connection, named
        db.before_commit(flush_more, None)
        if fail:
            raise RuntimeError("rolled back")

    work()
    assert calls == [("nudge", [1, 2, "from-flush"]), "send"]
    calls.clear()
    with pytest.raises(RuntimeError):
        work(fail=True)
    assert calls == []
