"""8 writers through two Galera nodes, a fixed number of operations each: the lanes stay
contiguous and verify. (A fixed count, not a time box: on a loaded machine a time box
proves less, and "every writer did something" was its only progress check.)"""

import threading
import time

import pytest
from django.db import connections
from prometheus_client import REGISTRY

from audit.models import AuditEntry, LaneHead
from audit.verify import verify_all
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from payflow.platform import context
from payflow.platform.db import TransactionRetriesExhausted
from tests.infra.fixtures import default_database_is
from tests.ledger.conftest import pay
from tests.waiting import join_all

pytestmark = [pytest.mark.galera, pytest.mark.django_db(transaction=True)]

WRITERS = 8
OPERATIONS = 25  # payment + refund pairs per writer
GIVE_UP_AFTER = 10  # refusals in a row before a writer counts as starved


def galera_attempts() -> int:
    from django.conf import settings

    return settings.DB_RETRY_ATTEMPTS


def retries() -> float:
    return (
        REGISTRY.get_sample_value(
            "payflow_db_transaction_retries_total", {"reason": "deadlock_or_certification_failure"}
        )
        or 0.0
    )


def test_eight_writers_on_two_nodes_each_do_their_operations_and_the_lanes_verify(galera):
    actor = context.current()
    with default_database_is("galera1"):
        merchants = [merchant_create(name=f"galera-writer-{i}") for i in range(WRITERS)]
    started = time.monotonic()
    done, refused, errors = [0] * WRITERS, [0] * WRITERS, []
    before = retries()

    def write(index):
        node = f"galera{1 + index % 2}"
        try:
            with context.replaced(actor), default_database_is(node):
                in_a_row = 0
                while done[index] < OPERATIONS and in_a_row < GIVE_UP_AFTER:
                    try:
                        payment = pay(merchants[index], amount=1000)
                        refund_create(payment=payment, amount=100)
                        done[index] += 1
                        in_a_row = 0
                    except TransactionRetriesExhausted:
                        # every lane head is a hot row when two nodes take writes: a
                        # transaction may lose certification 5 times in a row; it is rolled
                        # back whole and the caller (API: 409 contention) tries again
                        refused[index] += 1
                        in_a_row += 1
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    join_all(threads, 300, "Galera writers")

    assert errors == []
    assert done == [OPERATIONS] * WRITERS, (done, refused)  # every writer finished its work
    with default_database_is("galera3"):  # read back through the third node
        report = verify_all()
        heads = dict(LaneHead.objects.values_list("lane", "seq"))
        counts = {lane: AuditEntry.objects.filter(lane=lane).count() for lane in heads}
    assert report.ok, [(b.lane, b.break_seq, b.break_kind) for b in report.breaks]
    assert heads == counts  # contiguous from 1: as many rows as the head's seq
    print(
        f"\n{sum(done)} payment+refund pairs by {WRITERS} writers on 2 nodes in "
        f"{time.monotonic() - started:.1f}s; "
        f"{retries() - before:.0f} certification conflicts retried; {sum(refused)} operations "
        f"gave up after {galera_attempts()} attempts; {report.rows} audit rows verified"
    )
