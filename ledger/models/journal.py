from __future__ import annotations

from django.db import models
from django.db.models import Q

from payflow.platform.db import uuid7
from payflow.platform.guards import AuditedModel, GuardedModel


class AccountKind(models.TextChoices):
    # A merchant's money, owed by the platform (credit-normal liabilities).
    MERCHANT_PENDING = "merchant_pending"  # captured, not yet settled
    MERCHANT_AVAILABLE = "merchant_available"  # settled, can be paid out
    # What a merchant owes the platform (debit-normal asset): chargebacks beyond its balance.
    MERCHANT_RECEIVABLE = "merchant_receivable"
    # Platform accounts (one per currency).
    ACQUIRER_CLEARING = "acquirer_clearing"  # due from / to the acquirer
    PAYOUT_CLEARING = "payout_clearing"  # paid out to merchants, in transit to their banks
    SETTLEMENT_BANK = "settlement_bank"  # the platform's bank account


MERCHANT_KINDS = {
    AccountKind.MERCHANT_PENDING,
    AccountKind.MERCHANT_AVAILABLE,
    AccountKind.MERCHANT_RECEIVABLE,
}

#: Accounts whose running ``balance`` column is kept (and guarded >= 0) because decisions
#: depend on it at write time: payouts and refunds of settled payments are refused when
#: the available balance does not cover them.
TRACKED_KINDS = {AccountKind.MERCHANT_AVAILABLE}


class Account(models.Model):
    """A ledger account: per merchant, mode and currency, or a platform account per mode
    and currency.

    Balances are derived from journal lines. Only ``TRACKED_KINDS`` also keep a running
    ``balance`` (credit-normal: credits minus debits), changed by compare-and-set on
    ``version`` in the same transaction as the lines, and checked against the lines by
    ``ledger_check_invariants``. Platform accounts keep no running balance so that every
    payment does not serialize on one hot row.
    """

    PLATFORM = "platform"

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(
        "ledger.Merchant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Who the account belongs to, never NULL: the merchant's id, or "platform". The unique
    # constraint is on this column, not on ``merchant``: NULLs never collide in a unique
    # index, and MariaDB has no partial index to say "unique where merchant is NULL".
    owner = models.CharField(max_length=36, editable=False)
    # Test and live money never meet: every account, platform ones included, is one mode's.
    livemode = models.BooleanField(default=False)
    kind = models.CharField(max_length=24, choices=AccountKind.choices)
    currency = models.CharField(max_length=3)
    balance = models.BigIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "livemode", "kind", "currency"],
                name="account_unique_per_owner_mode",
            ),
            models.CheckConstraint(
                condition=Q(merchant__isnull=True, owner="platform")
                | (Q(merchant__isnull=False) & ~Q(owner="platform")),
                name="account_owner_matches_merchant",
            ),
            models.CheckConstraint(
                condition=~Q(kind=AccountKind.MERCHANT_AVAILABLE) | Q(balance__gte=0),
                name="account_available_not_negative",
            ),
        ]

    def __str__(self) -> str:
        mode = "live" if self.livemode else "test"
        return f"{self.owner}:{mode}:{self.kind}:{self.currency}"

    @classmethod
    def owner_of(cls, merchant_id: object | None) -> str:
        return cls.PLATFORM if merchant_id is None else str(merchant_id)


class JournalEntry(AuditedModel):
    """One balanced posting: the sum of its lines is zero for each currency."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    merchant = models.ForeignKey(
        "ledger.Merchant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    transaction = models.ForeignKey(
        "ledger.Transaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="journal_entries",
    )
    livemode = models.BooleanField(default=False)  # every line's account is of this mode
    kind = models.CharField(max_length=32)
    description = models.CharField(max_length=200, blank=True, default="")
    posted_at = models.DateTimeField(auto_now_add=True)

    audit_fields = (
        "id", "merchant", "livemode", "transaction", "kind", "description", "posted_at",
    )  # fmt: skip

    class Meta:
        indexes = [models.Index(fields=["merchant", "posted_at"], name="journal_merchant_date")]
        verbose_name_plural = "journal entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class JournalLine(GuardedModel):
    """An immutable line. ``amount`` is signed: positive debits, negative credits."""

    id = models.BigAutoField(primary_key=True)
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lines")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lines")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="line_not_zero")]
