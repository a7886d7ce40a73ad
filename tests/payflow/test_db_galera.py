"""payflow.platform.db.atomic against a real Galera certification conflict (two nodes, same row)."""

import pytest
from django.db import connections
from prometheus_client import REGISTRY

from payflow.platform import db
from tests.infra.fixtures import GALERA_DATABASE

pytestmark = pytest.mark.galera


def retries() -> float:
    value = REGISTRY.get_sample_value(
        "payflow_db_transaction_retries_total", {"reason": "deadlock_or_certification_failure"}
    )
    return value or 0.0


@pytest.fixture
def galera_probe(galera):
    with connections["galera1"].cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS atomic_probe")
        cursor.execute("CREATE TABLE atomic_probe (id INT PRIMARY KEY, n INT NOT NULL)")
        cursor.execute("INSERT INTO atomic_probe VALUES (1, 0)")
    yield galera
    with connections["galera1"].cursor() as cursor:
        cursor.execute("DROP TABLE atomic_probe")


def test_a_certification_conflict_between_two_nodes_is_retried_and_nothing_is_lost(galera_probe):
    # given a transaction on node 1 that updates a row ...
    node2 = galera_probe.nodes[1].connect(GALERA_DATABASE)
    attempts = []

    @db.atomic(using="galera1")
    def add_one_on_node1():
        attempts.append(1)
        with connections["galera1"].cursor() as cursor:
            cursor.execute("UPDATE atomic_probe SET n = n + 1 WHERE id = 1")
        if len(attempts) == 1:
            # ... while node 2 commits a write to the same row before node 1 commits
            node2.cursor().execute("UPDATE atomic_probe SET n = n + 10 WHERE id = 1")
            node2.commit()

    before = retries()
    # when node 1 commits: certification fails with 1213 and the wrapper runs it again
    add_one_on_node1()
    node2.close()

    # then both increments are there exactly once, seen from every node
    assert len(attempts) == 2
    assert retries() == before + 1
    for node in galera_probe.nodes:
        reader = node.connect(GALERA_DATABASE)
        cursor = reader.cursor()
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.execute("SELECT n FROM atomic_probe WHERE id = 1")
        assert cursor.fetchone() == (11,)
        reader.close()


def test_without_the_wrapper_the_same_conflict_surfaces_as_error_1213(galera_probe):
    node1 = galera_probe.nodes[0].connect(GALERA_DATABASE)
    node2 = galera_probe.nodes[1].connect(GALERA_DATABASE)
    node1.autocommit(False)
    node1.cursor().execute("UPDATE atomic_probe SET n = n + 1 WHERE id = 1")
    node2.cursor().execute("UPDATE atomic_probe SET n = n + 10 WHERE id = 1")
    node2.commit()
    import MySQLdb

    with pytest.raises(MySQLdb.OperationalError) as info:
        node1.commit()
    assert info.value.args[0] == 1213
    node1.close()
    node2.close()
