from __future__ import annotations

from django.db import models

from payflow.platform.db import uuid7
from payflow.platform.guards import AuditedModel


class MerchantStatus(models.TextChoices):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Merchant(AuditedModel):
    """The tenant: every transaction, token, account and key belongs to one merchant."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=MerchantStatus.choices, default=MerchantStatus.ACTIVE
    )
    default_currency = models.CharField(max_length=3, default="EUR")
    settlement_delay_days = models.PositiveSmallIntegerField(default=2)
    legal_hold = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    audit_fields = (
        "id",
        "name",
        "status",
        "default_currency",
        "settlement_delay_days",
        "legal_hold",
        "version",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=MerchantStatus.values), name="merchant_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == MerchantStatus.ACTIVE
