"""The composition root's own tables: Idempotency-Key records (the API's) and job runs
(beat's). The write guards that audited models use live in ``payflow.platform.guards``."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from payflow.platform.db import uuid7


class IdempotencyRecordQuerySet(models.QuerySet):
    def purge_expired(self, *, older_than_hours: int | None = None, batch_size: int = 1000) -> int:
        """Delete one batch of records older than the retention (never under 24 hours:
        a client's retry within a day must still replay); returns how many. Small batches,
        so a Galera writeset stays small."""
        hours = max(24, older_than_hours or settings.IDEMPOTENCY_RETENTION_HOURS)
        cutoff = timezone.now() - datetime.timedelta(hours=hours)
        ids = list(self.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        return self.filter(pk__in=ids).delete()[0] if ids else 0


class IdempotencyRecord(models.Model):
    """The first response to a POST with an ``Idempotency-Key``, kept for replays.

    One row per (merchant, mode, key), claimed by inserting it (the unique constraint makes two
    simultaneous claims impossible) in the request's first transaction that changes the
    ledger, and completed with the response by its last (``payflow.api.idempotency``).
    Keys are compared byte for byte: the unique index is on
    ``key_digest`` (SHA-256 of the key's bytes), never on ``key`` itself, whose column
    collation on MariaDB folds case and accents. ``request_hash`` is an HMAC of method,
    path and body (keyed, because a body may hold a card number).

    ``fence`` is the claim's generation: every transaction the request runs checks it by
    compare-and-set, and a retry that takes an expired claim over raises it, so the
    request that lost its claim can commit nothing more. ``object_kind``/``object_id``
    name what the request created or changed, written in the same transaction as that
    change: a retry after a crash reports (or resumes) that object instead of running
    the request a second time.
    """

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"

    id = models.BigAutoField(primary_key=True)
    merchant_id = models.UUIDField()
    livemode = models.BooleanField(default=False)  # test and live keys never collide
    key = models.CharField(max_length=255)
    key_digest = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=16, default=IN_PROGRESS)
    fence = models.PositiveIntegerField(default=1)
    object_kind = models.CharField(max_length=16, blank=True, default="")
    object_id = models.UUIDField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    locked_until = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = IdempotencyRecordQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant_id", "livemode", "key_digest"], name="idempotency_unique_mode_key"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.merchant_id}:{self.key}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.key_digest = self.digest(self.key)
        super().save(*args, **kwargs)

    @staticmethod
    def digest(key: str) -> str:
        """SHA-256 of the key's bytes (``surrogatepass``: any header text has bytes)."""
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class JobRun(models.Model):
    """The latest run of one scheduled job: one row per beat entry, overwritten by each run.

    Written after every run by ``payflow.jobs`` (Celery task signals), in its own small
    transaction. Only the latest run is kept, with running totals: the relay sweep runs
    every second, and a row per run would grow without bound. History lives in the logs
    and in the ``payflow_job_*`` metrics.
    """

    OK, FAILED = "ok", "failed"

    job = models.CharField(max_length=100, primary_key=True)
    task = models.CharField(max_length=200)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_duration_seconds = models.FloatField(null=True, blank=True)
    last_status = models.CharField(max_length=16, blank=True, default="")
    last_result = models.JSONField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_success_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    # Paused by an operator: beat's runs of the job are skipped until it is resumed.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True, default="")
    pause_reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        verbose_name = "scheduled job run"

    def __str__(self) -> str:
        return f"{self.job}: {self.last_status or 'never run'}"


class JobRunRecord(models.Model):
    """One run of a scheduled job, for the jobs page: the last ``JOB_HISTORY`` of each job
    are kept (``payflow.jobs.job_run_record`` inserts one and trims the older ones in the
    same transaction). ``started_by``: ``beat``, or the actor who asked for the run
    (``user:<id>`` for an operator's "run now"), or ``""`` when unknown."""

    OK, FAILED = JobRun.OK, JobRun.FAILED

    id = models.BigAutoField(primary_key=True)
    job = models.CharField(max_length=100)
    task = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    duration_seconds = models.FloatField()
    status = models.CharField(max_length=16)
    error = models.CharField(max_length=500, blank=True, default="")
    started_by = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["job", "id"], name="jobrunrecord_job")]
        verbose_name = "scheduled job run record"

    def __str__(self) -> str:
        return f"{self.job} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.status}"


class WebhookEndpoint(models.Model):
    """Where a merchant wants its events pushed (``payflow.webhooks``).

    The signing secret is stored sealed (AES-GCM under a key derived from the vault's
    current key, ``payflow.webhooks.secrets``), never in clear; it is shown once, when
    created or rolled. After a roll the previous secret still signs (a second ``v1=``)
    until ``previous_secret_expires_at``. Changed by ``payflow.webhooks.endpoints`` only,
    each change a compare-and-set on ``version``.
    """

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    merchant = models.ForeignKey("ledger.Merchant", on_delete=models.PROTECT)
    livemode = models.BooleanField(default=False)
    url = models.CharField(max_length=2048)
    description = models.CharField(max_length=500, blank=True, default="")
    enabled_events = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ENABLED)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    secret_sealed = models.BinaryField()
    previous_secret_sealed = models.BinaryField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [
            models.Index(
                fields=["merchant", "livemode", "status"], name="webhook_endpoint_merchant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.url} ({'live' if self.livemode else 'test'}, {self.status})"


class WebhookDelivery(models.Model):
    """One event owed to one endpoint, and how its delivery went.

    Written by the dispatcher when it reads the event from Kafka (unique per endpoint and
    event, so reading a message twice owes it once), before the consumer commits the
    offset. ``pending`` until an attempt got a 2xx (``succeeded``) or the retry span
    passed (``failed``, and the endpoint is disabled). ``aggregate_id``/``sequence`` keep
    per-object order: a delivery waits while an earlier one of the same object to the same
    endpoint is pending.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    sequence = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set by a dispatcher's claim (an attempt in flight until then), cleared by its record.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_one_per_event")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(
                fields=["endpoint", "aggregate_id", "sequence"], name="webhook_delivery_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what the receiver answered, how fast."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
