"""Each real part the suite relies on is really there and really works."""

import json
import subprocess
import sys

import pytest
from django.db import connection, connections

from tests.infra.fixtures import GALERA_DATABASE


@pytest.mark.django_db
def test_the_main_suite_runs_on_a_real_mariadb_server():
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION(), @@SESSION.tx_isolation, @@SESSION.sql_mode")
        version, isolation, sql_mode = cursor.fetchone()
    assert connection.vendor == "mysql"
    assert "MariaDB" in version
    assert isolation == "READ-COMMITTED"
    assert "STRICT_TRANS_TABLES" in sql_mode


@pytest.mark.galera
def test_the_galera_cluster_has_three_synced_nodes_that_replicate_writes(galera):
    for node in galera.nodes:
        status = node.status()
        assert status["wsrep_cluster_size"] == "3"
        assert status["wsrep_local_state_comment"] == "Synced"
    with connections["galera1"].cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS replication_probe (id INT PRIMARY KEY)")
        cursor.execute("REPLACE INTO replication_probe VALUES (42)")
    reader = galera.nodes[2].connect(GALERA_DATABASE)
    cursor = reader.cursor()
    cursor.execute("SET SESSION wsrep_sync_wait = 1")
    cursor.execute("SELECT id FROM replication_probe")
    assert cursor.fetchall() == ((42,),)
    cursor.execute("DROP TABLE replication_probe")
    reader.close()


@pytest.mark.galera
def test_the_payflow_schema_is_migrated_on_the_galera_cluster(galera):
    with connections["galera3"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations")
        (applied,) = cursor.fetchone()
    assert applied > 0


PRODUCER = """
import sys
from confluent_kafka import Producer
producer = Producer({"bootstrap.servers": sys.argv[1], "enable.idempotence": True, "acks": "all"})
for i in range(3):
    producer.produce("infra.probe", key=b"k", value=("message-%d" % i).encode())
assert producer.flush(15) == 0
"""


@pytest.mark.kafka
def test_a_message_produced_by_one_process_is_consumed_by_another(kafka_broker):
    subprocess.run([sys.executable, "-c", PRODUCER, kafka_broker.bootstrap], check=True, timeout=60)
    messages = kafka_broker.consume(["infra.probe"], expected=3)
    assert [m.value() for m in messages] == [b"message-0", b"message-1", b"message-2"]
    assert {m.key() for m in messages} == {b"k"}


@pytest.mark.celery_worker
def test_a_task_sent_from_the_test_runs_in_the_worker_process(celery_worker_process):
    from payflow.tasks import ping

    result = ping.delay().get(timeout=30)
    assert result["pid"] == celery_worker_process.process.pid
    assert result["pid"] != __import__("os").getpid()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_headless_chromium_logs_into_the_admin_of_a_live_server(
    live_server, page, django_user_model
):
    django_user_model.objects.create_superuser("root", "root@example.com", "s3cret-pass-phrase")
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "s3cret-pass-phrase")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")
    assert "Site administration" in page.title()


def test_the_embedded_broker_writes_json_free_plain_bootstrap_addresses(kafka_broker):
    hosts = kafka_broker.bootstrap.split(",")
    assert len(hosts) == 3
    assert all(host.startswith("127.0.0.1:") for host in hosts)
    with pytest.raises(json.JSONDecodeError):
        json.loads(kafka_broker.bootstrap)
