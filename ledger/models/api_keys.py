from __future__ import annotations

from django.db import models

from payflow.platform.db import uuid7
from payflow.platform.guards import AuditedModel


class ApiKeyMode(models.TextChoices):
    TEST = "test"
    LIVE = "live"


class ApiKey(AuditedModel):
    """A merchant's secret API key, stored only as a SHA-256 hash.

    The key is ``sk_<mode>_<random>``; ``prefix`` (the first characters of the random
    part) finds the row, and the hash of the whole key is compared in constant time. The
    random part carries 256 bits of entropy, so a fast hash is enough: unlike a password it
    cannot be guessed, and it must be checked on every request.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    merchant = models.ForeignKey(
        "ledger.Merchant", on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    mode = models.CharField(max_length=8, choices=ApiKeyMode.choices, default=ApiKeyMode.TEST)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    # Never the hash. last_used_at is telemetry and not audited.
    audit_fields = ("id", "merchant", "name", "mode", "prefix", "revoked_at", "version")

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"sk_{self.mode}_{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def livemode(self) -> bool:
        """The world this key works in: a test key never sees or moves live objects."""
        return self.mode == ApiKeyMode.LIVE

    @property
    def masked(self) -> str:
        return f"sk_{self.mode}_{self.prefix}{'•' * 8}"
