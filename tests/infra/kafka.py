"""The Kafka-protocol broker for tests: librdkafka's mock cluster in its own process."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Message


class KafkaBroker:
    """Runs ``python -m payflow.kafka_mock`` and knows its bootstrap address."""

    def __init__(self, workdir: Path, brokers: int = 3) -> None:
        self.workdir = workdir
        self.brokers = brokers
        self.bootstrap_file = workdir / "kafka-bootstrap"
        self.process: subprocess.Popen | None = None
        self.bootstrap = ""

    def start(self, timeout: float = 30) -> KafkaBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_file.unlink(missing_ok=True)
        log = open(self.workdir / "broker.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "payflow.kafka_mock",
                "--bootstrap-file",
                str(self.bootstrap_file),
                "--brokers",
                str(self.brokers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mock broker exited: {(self.workdir / 'broker.log').read_text()}"
                )
            if self.bootstrap_file.exists() and self.bootstrap_file.read_text().strip():
                self.bootstrap = self.bootstrap_file.read_text().strip()
                return self
            time.sleep(0.1)
        raise TimeoutError("mock broker wrote no bootstrap address")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def consume(
        self, topics: list[str], *, expected: int | None = None, timeout: float = 15
    ) -> list[Message]:
        """Read every message on ``topics`` from the beginning, with a fresh consumer group.

        Stops when ``expected`` messages arrived or when nothing new came for ``timeout``
        seconds in total.
        """
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe(topics)
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if expected is not None and len(messages) >= expected:
                    break
                message = consumer.poll(0.2)
                if message is None or message.error():
                    continue
                messages.append(message)
        finally:
            consumer.close()
        return messages
