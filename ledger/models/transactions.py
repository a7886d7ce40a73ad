from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from ledger import ids
from payflow.platform.db import uuid7
from payflow.platform.guards import AuditedModel


class TransactionType(models.TextChoices):
    PAYMENT = "payment"
    REFUND = "refund"
    CHARGEBACK = "chargeback"
    PAYOUT = "payout"


class TransactionStatus(models.TextChoices):
    INITIATED = "initiated"
    PENDING = "pending"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    SETTLED = "settled"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class CaptureMethod(models.TextChoices):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Transaction(AuditedModel):
    """One money movement: a payment, a refund, a chargeback or a payout.

    Every change after the insert is a compare-and-set on ``version`` made by
    ``ledger.services`` (see ``ledger.state`` for the legal transitions). For a payment,
    ``amount`` is the authorized amount, ``captured_amount`` what was captured, and
    ``refunded_amount`` / ``charged_back_amount`` what has gone back; the database refuses
    any row where more went back than was captured.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    merchant = models.ForeignKey("ledger.Merchant", on_delete=models.PROTECT, related_name="+")
    # Test or live world, from the API key that created it (DESIGN.md section 5): part of
    # every query's scope, exactly like the merchant.
    livemode = models.BooleanField(default=False)
    type = models.CharField(max_length=16, choices=TransactionType.choices)
    status = models.CharField(max_length=16, choices=TransactionStatus.choices)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    captured_amount = models.BigIntegerField(default=0)
    refunded_amount = models.BigIntegerField(default=0)
    charged_back_amount = models.BigIntegerField(default=0)
    capture_method = models.CharField(
        max_length=16, choices=CaptureMethod.choices, blank=True, default=""
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    card_token = models.ForeignKey(
        "ledger.CardToken", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # NULL means "not given"; "" would be a reference the merchant chose.
    external_reference = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    metadata = models.JSONField(default=dict, blank=True)
    decline_code = models.CharField(max_length=40, blank=True, default="")
    failure_message = models.CharField(max_length=200, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    initiated_at = models.DateTimeField(auto_now_add=True)
    captured_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    audit_fields = (
        "id",
        "merchant",
        "livemode",
        "type",
        "status",
        "amount",
        "currency",
        "captured_amount",
        "refunded_amount",
        "charged_back_amount",
        "capture_method",
        "parent",
        "card_token",
        "external_reference",
        "metadata",
        "decline_code",
        "failure_message",
        "reason",
        "initiated_at",
        "captured_at",
        "completed_at",
        "version",
    )

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "initiated_at"], name="txn_merchant_date"),
            models.Index(fields=["status", "initiated_at"], name="txn_status_date"),
            models.Index(fields=["merchant", "external_reference"], name="txn_external_ref"),
            models.Index(
                fields=["merchant", "livemode", "type", "initiated_at"],
                name="txn_merchant_mode_type",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="txn_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_amount__gte=0) & Q(captured_amount__lte=F("amount")),
                name="txn_captured_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0)
                & Q(charged_back_amount__gte=0)
                & Q(captured_amount__gte=F("refunded_amount") + F("charged_back_amount")),
                name="txn_returned_within_captured",
            ),
            models.CheckConstraint(
                condition=Q(type__in=TransactionType.values), name="txn_type_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=TransactionStatus.values), name="txn_status_valid"
            ),
        ]

    def __str__(self) -> str:
        # the id people know (pay_…, re_…, cb_…, po_…): admin titles, breadcrumbs, links
        return ids.encode(self.type, self.id) if self.type in ids.PREFIXES else str(self.id)

    @property
    def returned_amount(self) -> int:
        return self.refunded_amount + self.charged_back_amount

    @property
    def refundable_amount(self) -> int:
        return self.captured_amount - self.returned_amount
