"""16 writers through two Galera nodes for 20 s (issue 15): no operation given up, the log
sequenced from the third node verifies there. With per-object chains no audit row is shared
between writers, so auditing adds no certification conflict beyond each row's own CAS."""

import threading
import time

import pytest
from django.db import connections, transaction
from prometheus_client import REGISTRY

from audit.models import AuditEntry, LogLeaf
from audit.verify import verify_log
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from payflow.platform import context
from payflow.platform.db import TransactionRetriesExhausted
from tests.audit.conftest import sequence
from tests.infra.fixtures import default_database_is
from tests.ledger.conftest import pay
from tests.waiting import join_all

pytestmark = [pytest.mark.galera, pytest.mark.django_db(transaction=True)]

WRITERS = 16
SECONDS = 20.0


def retries() -> float:
    return (
        REGISTRY.get_sample_value(
            "payflow_db_transaction_retries_total", {"reason": "deadlock_or_certification_failure"}
        )
        or 0.0
    )


def test_sixteen_writers_on_two_nodes_for_20_seconds_give_up_nothing_and_the_log_verifies(
    galera,
):
    actor = context.current()
    with default_database_is("galera1"):
        merchants = [merchant_create(name=f"galera-writer-{i}") for i in range(WRITERS)]
    done, gave_up, errors = [0] * WRITERS, [0] * WRITERS, []
    before = retries()
    stop_at = time.monotonic() + SECONDS

    def write(index):
        node = f"galera{1 + index % 2}"
        try:
            with context.replaced(actor), default_database_is(node):
                while time.monotonic() < stop_at:
                    try:
                        payment = pay(merchants[index], amount=1000)
                        refund_create(payment=payment, amount=100)
                        done[index] += 1
                    except TransactionRetriesExhausted:
                        gave_up[index] += 1
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    join_all(threads, SECONDS + 120, "Galera writers")

    assert errors == []
    assert all(done), done  # every writer made progress
    assert sum(gave_up) == 0, gave_up
    with default_database_is("galera3"):  # the log is sequenced and verified on the third node
        sequence()
        # in one transaction: verification then reads in line, on this thread's swapped
        # connection (its read-ahead thread would open the test database's default instead)
        with transaction.atomic():
            report = verify_log()
        entries, leaves = AuditEntry.objects.count(), LogLeaf.objects.count()
    assert report.ok, [b.as_dict() for b in report.breaks]
    assert entries == leaves
    print(
        f"\n{sum(done)} payment+refund pairs by {WRITERS} writers on 2 nodes in {SECONDS:.0f}s; "
        f"{retries() - before:.0f} certification conflicts retried; {sum(gave_up)} given up; "
        f"{report.entries} log entries verified on the third node"
    )
