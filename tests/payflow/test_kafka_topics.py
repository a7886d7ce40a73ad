"""``manage.py kafka_topics`` against the Kafka-protocol broker (librdkafka's mock cluster).

The mock cluster has no controller: it answers metadata (topics, partitions, replicas) and
produce requests, and auto-creates a topic (4 partitions, one replica per broker) on first
produce, but it times out CreateTopics and DescribeConfigs. So creation and the
``min.insync.replicas`` read are exercised here only up to their error path, which must
be a sentence and a non-zero exit; their success path needs a real broker (compose).
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from django.core.management import CommandError, call_command

from ledger.events import Topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.fixture
def prefix(kafka_settings, settings):
    settings.KAFKA_TOPIC_PREFIX = f"t{uuid.uuid4().hex[:8]}."
    return settings.KAFKA_TOPIC_PREFIX


def run(*args):
    return call_command("kafka_topics", *args, "--timeout", "3")


def test_check_names_every_missing_topic(prefix):
    with pytest.raises(CommandError) as refused:
        run("--check")
    message = str(refused.value)
    for topic in Topic:
        assert f"{prefix}{topic}: missing" in message


def test_check_reports_partitions_and_replicas_that_differ_and_never_changes_them(
    prefix, kafka_settings
):
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap})
    for topic in Topic:
        producer.produce(f"{prefix}{topic}", b"{}")
    assert producer.flush(10) == 0
    name = f"{prefix}{Topic.TRANSACTIONS_COMPLETED}"

    with pytest.raises(CommandError) as refused:
        run("--check", "--partitions", "12", "--replication-factor", "2")
    message = str(refused.value)
    assert f"{name}: has 4 partitions, wants at least 12" in message
    assert f"{name}: has 3 replicas per partition, wants 2" in message

    # Shape as wanted: what is left is the configuration the mock cannot describe.
    with pytest.raises(CommandError) as refused:
        run("--check", "--partitions", "4", "--replication-factor", "3")
    message = str(refused.value)
    assert "partitions, wants" not in message
    assert "replicas per partition" not in message
    assert f"{name}: its configuration cannot be read: " in message


def test_a_topic_the_cluster_does_not_create_is_a_sentence_not_a_traceback(prefix):
    with pytest.raises(CommandError) as refused:
        run()
    assert f"{prefix}{Topic.AUDIT_EVENTS}: Kafka did not create it: " in str(refused.value)


def test_impossible_durability_is_refused_before_asking_kafka(prefix):
    with pytest.raises(CommandError, match="between 1 and --replication-factor"):
        run("--replication-factor", "3", "--min-insync-replicas", "4")


def test_an_unreachable_cluster_is_a_sentence(settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:1"
    with pytest.raises(CommandError, match="Kafka does not answer"):
        run("--check")
