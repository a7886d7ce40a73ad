"""The write path's budget (issue 17): what one payment costs the database and the brokers.

A guard, not a timing: one steady-state ``POST /v1/payments`` (token, CVC, automatic
capture, ``Idempotency-Key``) through the whole Django stack on MariaDB, counting

- SQL statements (``BEGIN``/``COMMIT``/savepoints are not statements of work),
- transactions (commits),
- Redis commands and Celery messages on the request path,
- ``SELECT … FOR UPDATE``.

The test acquirer is ``ledger.simulator.SimulatedAcquirer``: it keeps its own books in the
same database (``ledger_simulatedoperation``), in its own transaction, as a real acquirer
keeps its books behind the network call. Those statements are the acquirer's, not the
payment's, and are counted apart (and asserted, so a change there is seen too).

When a change adds a statement, this test fails: either the change is worth it (raise the
budget here, and say why in the commit) or it found another way.
"""

from __future__ import annotations

import pytest
import redis
from celery.app.task import Task
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ledger.models import Transaction
from tests.payflow.api.conftest import CARD

pytestmark = pytest.mark.django_db(transaction=True)

#: The budget of one payment (issue 17's goal: at most 10 statements, 2 transactions).
STATEMENTS = 10
TRANSACTIONS = 2
SIMULATOR_TABLE = "ledger_simulatedoperation"
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


class BrokerCalls:
    """Counts Redis commands and Celery messages sent while it is installed."""

    def __init__(self, monkeypatch) -> None:
        self.redis: list[str] = []
        self.celery: list[str] = []
        execute = redis.Redis.execute_command
        pipeline = redis.client.Pipeline.execute
        apply_async = Task.apply_async

        def counting_execute(client, *args, **kwargs):
            self.redis.append(str(args[0]) if args else "?")
            return execute(client, *args, **kwargs)

        def counting_pipeline(client, *args, **kwargs):
            self.redis.append("pipeline")
            return pipeline(client, *args, **kwargs)

        def counting_apply_async(task, *args, **kwargs):
            self.celery.append(task.name)
            return apply_async(task, *args, **kwargs)

        monkeypatch.setattr(redis.Redis, "execute_command", counting_execute)
        monkeypatch.setattr(redis.client.Pipeline, "execute", counting_pipeline)
        monkeypatch.setattr(Task, "apply_async", counting_apply_async)


def split(captured: list[dict]) -> tuple[list[str], list[str], int, int]:
    """(the payment's statements, the simulator's, the payment's commits, the simulator's)."""
    ours: list[str] = []
    acquirer: list[str] = []
    commits = acquirer_commits = 0
    in_simulator = False
    current: list[str] = []
    for query in captured:
        sql = query["sql"]
        if sql.startswith("COMMIT"):
            in_simulator = any(SIMULATOR_TABLE in statement for statement in current)
            if in_simulator:
                acquirer_commits += 1
            else:
                commits += 1
            current = []
            continue
        if sql.startswith(CONTROL):
            continue
        current.append(sql)
        (acquirer if SIMULATOR_TABLE in sql else ours).append(sql)
    return ours, acquirer, commits, acquirer_commits


def test_a_payment_stays_within_its_statement_transaction_and_broker_budget(api, monkeypatch):
    token = api.post("/v1/tokens", {"card": CARD}, format="json").json()["id"]
    body = {"amount": 1000, "currency": "EUR", "token": token, "cvc": "123", "capture": True}
    for number in range(2):  # the first payment creates the accounts and fills the caches
        warm = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY=f"warm-{number}")
        assert warm.status_code == 201, warm.content
    calls = BrokerCalls(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="budget")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "captured"
    ours, acquirer, commits, acquirer_commits = split(queries.captured_queries)
    listing = "\n".join(sql[:160] for sql in ours)
    assert len(ours) <= STATEMENTS, f"{len(ours)} statements:\n{listing}"
    assert commits <= TRANSACTIONS, f"{commits} transactions:\n{listing}"
    assert not [sql for sql in ours if "FOR UPDATE" in sql], listing
    assert calls.redis == [], calls.redis
    assert calls.celery == [], calls.celery
    # the acquirer's own books: a look-up and an insert, in one transaction of its own
    assert len(acquirer) == 2, acquirer
    assert acquirer_commits == 1

    # the same key again: the request runs up to its intent, whose INSERT of the key's
    # record collides; that transaction rolls back whole and the stored answer is replayed
    payments = Transaction.objects.count()
    with CaptureQueriesContext(connection) as replay:
        again = api.post("/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="budget")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == response.json()
    replayed, _, replay_commits, _ = split(replay.captured_queries)
    assert replay_commits == 0
    assert len(replayed) <= 5, replayed
    assert Transaction.objects.count() == payments


def test_ping_costs_no_statement_once_the_key_is_known(api):
    assert api.get("/v1/ping").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/v1/ping").status_code == 200
    ours, _, _, _ = split(queries.captured_queries)
    assert ours == [], ours
