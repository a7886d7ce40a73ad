"""Outbox events: written in the same transaction as the change, relayed to Kafka later."""

from __future__ import annotations

from django.db import models

from ledger import ids
from payflow.platform.db import uuid7


class EventStatus(models.TextChoices):
    PENDING = "pending"
    PUBLISHED = "published"
    DEAD = "dead"


def public_aggregate(kind: str, aggregate_id: str) -> str:
    """An aggregate by the id people know (``pay_…``), or its id when it has none."""
    return ids.encode_if_public(kind, aggregate_id)


class OutboxEvent(models.Model):
    """One business event waiting for (or done with) its trip to Kafka.

    ``relay_partition`` (hash of the aggregate id modulo ``OUTBOX_RELAY_PARTITIONS``) decides
    which relay lease covers it, so one aggregate's events are always published by one
    relay at a time, in ``sequence`` order (the aggregate's version after the change).
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    merchant_id = models.UUIDField(null=True, blank=True)
    livemode = models.BooleanField(default=False)  # the transaction's mode
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.PositiveIntegerField()
    event_type = models.CharField(max_length=64)
    schema_version = models.PositiveSmallIntegerField(default=1)
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=64)
    payload = models.JSONField()
    headers = models.JSONField(default=dict)
    relay_partition = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=16, choices=EventStatus.choices, default=EventStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    kafka_partition = models.IntegerField(null=True, blank=True)
    kafka_offset = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["relay_partition", "status", "id"], name="outbox_relay_queue"),
            models.Index(fields=["aggregate_id", "sequence"], name="outbox_aggregate"),
            models.Index(fields=["merchant_id", "livemode", "id"], name="outbox_merchant_mode"),
            models.Index(fields=["status", "created_at"], name="outbox_status_age"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "sequence", "event_type"],
                name="outbox_one_event_per_change",
            ),
        ]

    def __str__(self) -> str:
        aggregate = public_aggregate(self.aggregate_type, self.aggregate_id)
        return f"{self.event_type} {aggregate}#{self.sequence}"


class RelayLease(models.Model):
    """Who publishes a relay partition, until when. Claimed and renewed by conditional
    UPDATE (committed before publishing), so two relays never publish one partition."""

    partition = models.PositiveSmallIntegerField(primary_key=True)
    owner = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"partition {self.partition} → {self.owner or 'free'}"
