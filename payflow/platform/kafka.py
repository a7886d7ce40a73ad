"""Where Kafka is, and how PayFlow's clients talk to it."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka.admin import AdminClient
from django.conf import settings


class KafkaUnavailable(Exception):
    """The Kafka bootstrap address is unknown or the cluster does not answer."""


def bootstrap_servers() -> str:
    """The bootstrap list: from KAFKA_BOOTSTRAP_SERVERS, or the embedded broker's file."""
    configured = settings.KAFKA_BOOTSTRAP_SERVERS
    if configured != "embedded":
        return configured
    path = settings.KAFKA_DEV_BOOTSTRAP_FILE
    try:
        address = path.read_text().strip()
    except FileNotFoundError:
        address = ""
    if not address:
        raise KafkaUnavailable(
            f"the embedded development broker is not running (no address in {path}); "
            "start it with `python manage.py kafka_dev_broker`"
        )
    return address


def topic(name: str) -> str:
    """A topic name with the configured prefix (e.g. ``staging.transactions.completed``)."""
    return f"{settings.KAFKA_TOPIC_PREFIX}{name}"


def client_config(**overrides: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap_servers(), **overrides}


_admin_lock = threading.Lock()
_admin_clients: dict[str, AdminClient] = {}


def _admin_client(bootstrap: str) -> AdminClient:
    # One long-lived client per address: creating a client per health probe would spawn
    # librdkafka threads and connections on every request.
    with _admin_lock:
        client = _admin_clients.get(bootstrap)
        if client is None:
            client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
            _admin_clients[bootstrap] = client
        return client


def cluster_metadata_check(timeout: float | None = None) -> dict[str, Any]:
    """Ask the cluster for its metadata; return what a readiness probe reports."""
    started = time.monotonic()
    bootstrap = bootstrap_servers()
    metadata = _admin_client(bootstrap).list_topics(
        timeout=timeout if timeout is not None else settings.KAFKA_HEALTH_TIMEOUT
    )
    return {
        "brokers": len(metadata.brokers),
        "controller_id": metadata.controller_id,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }
