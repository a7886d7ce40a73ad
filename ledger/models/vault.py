from __future__ import annotations

from django.db import models

from payflow.platform.db import uuid7
from payflow.platform.guards import AuditedModel


class CardToken(AuditedModel):
    """A tokenized card. The PAN (and holder name) exist only inside ``ciphertext``.

    ``ciphertext`` is AES-256-GCM under vault key ``key_version`` with a fresh ``nonce``
    and the token id as associated data, so a ciphertext moved to another row does not
    decrypt. ``fingerprint`` is an HMAC of the PAN keyed per merchant: the same card
    tokenized twice by one merchant has the same fingerprint; across merchants it differs.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    merchant = models.ForeignKey("ledger.Merchant", on_delete=models.PROTECT, related_name="+")
    livemode = models.BooleanField(default=False)  # the creating key's mode
    brand = models.CharField(max_length=16)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    fingerprint = models.CharField(max_length=64)
    key_version = models.PositiveIntegerField()
    nonce = models.BinaryField(max_length=12)
    ciphertext = models.BinaryField(max_length=512)
    created_at = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    # Never the ciphertext, nonce or anything derived from the PAN beyond last4/brand.
    audit_fields = (
        "id", "merchant", "livemode", "brand", "last4", "exp_month", "exp_year", "fingerprint",
        "key_version", "version",
    )  # fmt: skip

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "fingerprint"], name="cardtoken_merchant_fp"),
            models.Index(fields=["key_version"], name="cardtoken_key_version"),
        ]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"


class VaultKey(AuditedModel):
    """A vault key version as first seen by the rotation check. Never the key itself.

    Keys live in the environment (``VAULT_KEYS``), which has no dates; this row records
    when a version was first seen, so the rotation check can tell when the current key
    passes its 90 days. ``key_check`` is a short HMAC check value of the key: a different
    value later means the key bytes changed under the same version number.
    """

    version = models.PositiveIntegerField(primary_key=True)
    key_check = models.CharField(max_length=16)
    first_seen_at = models.DateTimeField()

    audit_fields = ("version", "key_check", "first_seen_at")

    def __str__(self) -> str:
        return f"vault key v{self.version}"
