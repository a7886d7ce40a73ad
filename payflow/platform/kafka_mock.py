"""The embedded development Kafka broker: librdkafka's mock cluster in its own process.

librdkafka (inside confluent-kafka) can run an in-process mock cluster that speaks the real
Kafka protocol over TCP on loopback ports (``test.mock.num.brokers``). It supports the
idempotent and transactional producer and consumer groups, and it creates topics on first
use. This module keeps one alive for as long as the process runs and writes its bootstrap
address to a file, where every other process (web, worker, tests) finds it.

It is a development and test broker: it keeps messages in memory only. Production points
``KAFKA_BOOTSTRAP_SERVERS`` at a real Kafka cluster.

Run: ``python -m payflow.platform.kafka_mock --bootstrap-file var/kafka-bootstrap``
(no Django needed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from confluent_kafka import Producer


def start_mock_cluster(num_brokers: int = 3) -> tuple[Producer, str]:
    """Start a mock cluster owned by the returned client; return it and the bootstrap list."""
    owner = Producer(
        {
            "test.mock.num.brokers": num_brokers,
            # Replaced by the mock cluster's own addresses; librdkafka requires the key.
            "bootstrap.servers": "mock",
            "log_level": 3,
        }
    )
    metadata = owner.list_topics(timeout=10)
    brokers = sorted(metadata.brokers.values(), key=lambda broker: broker.id)
    bootstrap = ",".join(f"{broker.host}:{broker.port}" for broker in brokers)
    return owner, bootstrap


def write_bootstrap_file(path: Path, bootstrap: str) -> None:
    """Write atomically, so a reader never sees a half-written address."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(bootstrap + "\n")
    os.replace(partial, path)


def serve(bootstrap_file: Path, num_brokers: int) -> None:
    owner, bootstrap = start_mock_cluster(num_brokers)
    write_bootstrap_file(bootstrap_file, bootstrap)
    print(f"development Kafka broker ({num_brokers} brokers) on {bootstrap}", flush=True)
    print(f"bootstrap address written to {bootstrap_file}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            owner.poll(0)
    finally:
        # Only remove the file if it still names this broker (a newer one may have replaced it).
        try:
            if bootstrap_file.read_text().strip() == bootstrap:
                bootstrap_file.unlink()
        except FileNotFoundError:
            pass
        print("development Kafka broker stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-file", type=Path, required=True)
    parser.add_argument("--brokers", type=int, default=3)
    args = parser.parse_args(argv)
    serve(args.bootstrap_file, args.brokers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
