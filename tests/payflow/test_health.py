"""/healthz and /readyz against the real database, Galera nodes and Kafka-protocol broker."""

import pytest

from payflow import health
from tests.infra.fixtures import default_database_is


def test_healthz_answers_without_touching_any_dependency(client):
    # no django_db mark: any database access here would raise
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.kafka
@pytest.mark.django_db
def test_readyz_is_ok_when_mariadb_and_kafka_answer(client, kafka_settings):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True, "vendor": "mysql"}
    assert body["checks"]["kafka"]["ok"] is True
    assert body["checks"]["kafka"]["brokers"] == 3


@pytest.mark.django_db
def test_readyz_reports_kafka_as_degraded_but_stays_ready(client, settings, tmp_path):
    # the embedded broker is not running: no bootstrap file
    settings.KAFKA_BOOTSTRAP_SERVERS = "embedded"
    settings.KAFKA_DEV_BOOTSTRAP_FILE = tmp_path / "absent"
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["kafka"]["ok"] is False
    assert "kafka_dev_broker" in body["checks"]["kafka"]["error"]


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_does_not_answer(client, monkeypatch):
    def broken():
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(health, "database_check", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "database unreachable" in response.json()["checks"]["database"]["error"]


@pytest.mark.galera
def test_readyz_database_check_reports_a_synced_galera_node(galera):
    with default_database_is("galera2"):
        result = health.database_check()
    assert result["ok"] is True
    assert result["galera"]["state"] == "Synced"
    assert result["galera"]["ready"] == "ON"
    assert result["galera"]["cluster_size"] == 3


@pytest.mark.galera
def test_readyz_database_check_fails_on_a_node_that_is_not_synced(galera):
    # a desynced node (as during a backup or a long state transfer) must leave the pool
    node = galera.nodes[2].connect()
    node.cursor().execute("SET GLOBAL wsrep_desync = ON")
    try:
        with default_database_is("galera3"):
            result = health.database_check()
    finally:
        node.cursor().execute("SET GLOBAL wsrep_desync = OFF")
        node.close()
    assert result["galera"]["state"] == "Donor/Desynced"
    assert result["ok"] is False


def test_readyz_refuses_other_methods(client):
    assert client.post("/readyz").status_code == 405


@pytest.mark.django_db
def test_readyz_reports_a_dead_outbox_event_and_an_unreachable_broker_as_degraded(
    client, settings, tmp_path
):
    from ledger.services.merchants import merchant_create
    from outbox.models import EventStatus, OutboxEvent
    from tests.ledger.conftest import pay

    settings.KAFKA_BOOTSTRAP_SERVERS = "embedded"
    settings.KAFKA_DEV_BOOTSTRAP_FILE = tmp_path / "absent"
    pay(merchant_create(name="Ready Shop"), amount=1000)
    OutboxEvent.objects.filter(pk=OutboxEvent.objects.first().pk).update(status=EventStatus.DEAD)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    response = client.get("/readyz")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["outbox"]["ok"] is False
    assert body["checks"]["outbox"]["dead"] == 1
    assert body["checks"]["celery_broker"]["ok"] is False
