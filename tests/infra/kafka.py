"""The Kafka-protocol broker for tests: librdkafka's mock cluster in its own process."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Message


class KafkaBroker:
    """Runs ``python -m payflow.platform.kafka_mock`` and knows its bootstrap address."""

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
                "payflow.platform.kafka_mock",
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
        self,
        topics: list[str],
        *,
        expected: int | None = None,
        timeout: float = 15,
        max_seconds: float = 120,
    ) -> list[Message]:
        """Read every message on ``topics`` from the beginning, with a fresh consumer group.

        Stops when ``expected`` messages arrived, or when nothing new came for ``timeout``
        seconds (an idle timeout, counted from the moment the consumer has its partitions:
        joining the group can take seconds on a loaded machine), and in any case after
        ``max_seconds``.
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
        started = time.monotonic()
        last_news = None  # when the partitions were assigned, then each message's arrival
        try:
            while time.monotonic() - started < max_seconds:
                if expected is not None and len(messages) >= expected:
                    break
                now = time.monotonic()
                if last_news is None and consumer.assignment():
                    last_news = now
                if last_news is not None and now - last_news > timeout:
                    break
                message = consumer.poll(0.2)
                if message is None or message.error():
                    continue
                messages.append(message)
                last_news = time.monotonic()
        finally:
            consumer.close()
        return messages
