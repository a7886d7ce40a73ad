from __future__ import annotations

from django.db import models
from django.db.models import Q

from payflow.platform.db import uuid7
from payflow.platform.guards import AuditedModel


class CommandKind(models.TextChoices):
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


class CommandStatus(models.TextChoices):
    PENDING = "pending"  # booked; the acquirer has not confirmed yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the acquirer refused it


class AcquirerCommand(AuditedModel):
    """A call PayFlow owes the acquirer: the capture, void or refund of an authorization.

    Written ``pending`` in the same transaction as the booking it completes (a capture's
    journal entry, a cancellation, a refund's reservation), so the intent survives any
    crash; sent after that commit, and again by the recovery job (``ledger.services.
    recovery``) until the acquirer has answered. The id is the reference the acquirer
    deduplicates by, so sending it twice moves money once. Changed only by
    compare-and-set on ``version`` (audited like every ledger row).
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    transaction = models.ForeignKey(
        "ledger.Transaction", on_delete=models.PROTECT, related_name="acquirer_commands"
    )
    kind = models.CharField(max_length=16, choices=CommandKind.choices)
    # The authorization it acts on: the payment's id, the reference it was authorized by.
    authorization = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=CommandStatus.choices, default=CommandStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    result_code = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    audit_fields = (
        "id",
        "transaction",
        "kind",
        "authorization",
        "amount",
        "currency",
        "status",
        "result_code",
        "created_at",
        "completed_at",
        "version",
    )

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="acquirer_command_due"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="acquirer_command_amount"),
            models.CheckConstraint(
                condition=Q(kind__in=CommandKind.values), name="acquirer_command_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=CommandStatus.values), name="acquirer_command_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} {self.status}"
