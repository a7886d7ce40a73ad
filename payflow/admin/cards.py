"""Admin of card tokens: masked, read-only; the secret columns are never loaded."""

from __future__ import annotations

from django.contrib import admin

from ledger import ids
from ledger.models import CardToken
from payflow.admin.base import ReadOnlyAdmin


@admin.register(CardToken)
class CardTokenAdmin(ReadOnlyAdmin):
    """Masked: brand, last four and expiry. Never the ciphertext, nonce or fingerprint."""

    list_display = ("masked", "merchant", "livemode", "expiry", "created_at")
    list_filter = ("livemode", "brand")
    list_select_related = ("merchant",)
    search_fields = ("last4",)
    fields = ("token_id", "merchant", "brand", "last4", "expiry", "created_at")
    readonly_fields = fields

    @admin.display(description="card")
    def masked(self, obj: CardToken) -> str:
        return f"{obj.brand} •••• {obj.last4}"

    @admin.display(description="expiry")
    def expiry(self, obj: CardToken) -> str:
        return f"{obj.exp_month:02d}/{obj.exp_year}"

    @admin.display(description="id")
    def token_id(self, obj: CardToken) -> str:
        return ids.encode("token", obj.pk)

    def get_queryset(self, request):
        # The secret columns are never even loaded.
        return super().get_queryset(request).defer("ciphertext", "nonce", "fingerprint")
