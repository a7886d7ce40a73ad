import json
import uuid

import pytest

from ledger.services.merchants import merchant_create

TRANSACTION_TOPICS = ["transactions.initiated", "transactions.completed", "transactions.failed"]


@pytest.fixture
def merchant(db):
    return merchant_create(name="Outbox Shop")


@pytest.fixture
def broker(kafka_settings, settings):
    """The Kafka-protocol broker, with short delivery timeouts for failure tests."""
    settings.OUTBOX_DELIVERY_TIMEOUT_MS = 5000
    settings.KAFKA_TOPIC_PREFIX = f"t{uuid.uuid4().hex[:12]}."
    from outbox import relay

    relay.reset_producer()
    yield kafka_settings
    relay.reset_producer()


def envelopes(broker, topics, expected=None, timeout=15):
    from payflow.platform import kafka

    messages = broker.consume([kafka.topic(t) for t in topics], expected=expected, timeout=timeout)
    return [json.loads(message.value()) for message in messages], messages
