"""The development broker and the event tail commands, as people run them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.kafka


def test_kafka_tail_prints_events_arriving_on_a_topic(kafka_settings, capsys):
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap})
    producer.produce("tail.probe", key=b"pay_1", value=b'{"type": "payment.captured"}')
    assert producer.flush(10) == 0
    call_command(
        "kafka_tail", "tail.probe", "--from-beginning", "--max-messages", "1", "--timeout", "20"
    )
    out = capsys.readouterr().out
    assert "tail.probe[" in out
    assert 'key=pay_1 {"type": "payment.captured"}' in out


def test_kafka_tail_explains_when_the_embedded_broker_is_not_running(settings, tmp_path):
    settings.KAFKA_BOOTSTRAP_SERVERS = "embedded"
    settings.KAFKA_DEV_BOOTSTRAP_FILE = tmp_path / "none"
    with pytest.raises(CommandError, match="kafka_dev_broker"):
        call_command("kafka_tail", "--timeout", "1")


def test_the_dev_broker_command_serves_until_stopped_and_cleans_up(tmp_path):
    bootstrap_file = tmp_path / "kafka-bootstrap"
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "kafka_dev_broker",
            "--bootstrap-file",
            str(bootstrap_file),
        ],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not bootstrap_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = bootstrap_file.read_text().strip()
        assert len(address.split(",")) == 3
        # another process reaches it over TCP
        producer = Producer({"bootstrap.servers": address})
        metadata = producer.list_topics(timeout=10)
        assert len(metadata.brokers) == 3
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "development Kafka broker stopped" in output
    assert not bootstrap_file.exists()
