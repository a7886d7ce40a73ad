"""Admin of card tokens: masked, read-only; the secret columns are never loaded. One
action: erase the cardholder (GDPR art. 17, ``operations.operator_cardholder_erase``)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q
from django.urls import path

from ledger import ids
from ledger.models import CardToken
from ledger.services.personal_data import card_token_erased
from payflow import operations
from payflow.admin.base import ActionPage, ReadOnlyAdmin, ReasonForm, get_or_404, render_action
from payflow.admin.display import looks_like_public_id, uuid_of_public_id
from payflow.admin.history import audit_history


@admin.register(CardToken)
class CardTokenAdmin(ReadOnlyAdmin):
    """Masked: brand, last four and expiry. Never the ciphertext, nonce or fingerprint."""

    list_display = ("token_id", "masked", "merchant", "livemode", "expiry", "created_at")
    list_filter = ("livemode", "brand")
    list_select_related = ("merchant",)
    search_fields = ("last4",)
    search_help_text = "A card token's id (tok_…), a merchant's (acct_…), or the last four digits."
    fields = ("token_id", "merchant", "brand", "last4", "expiry", "created_at", "erased", "history")
    readonly_fields = fields
    operate_permission = "ledger.change_cardtoken"

    @admin.display(description="card")
    def masked(self, obj: CardToken) -> str:
        return f"{obj.brand} •••• {obj.last4}"

    @admin.display(description="expiry")
    def expiry(self, obj: CardToken) -> str:
        return f"{obj.exp_month:02d}/{obj.exp_year}"

    @admin.display(description="id", ordering="id")
    def token_id(self, obj: CardToken) -> str:
        return ids.encode("token", obj.pk)

    def get_search_results(self, request, queryset, search_term):
        value = uuid_of_public_id(search_term)
        if value is not None:
            return queryset.filter(Q(pk=value) | Q(merchant_id=value)), False
        if looks_like_public_id(search_term):
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="cardholder erased", boolean=True)
    def erased(self, obj: CardToken) -> bool:
        return card_token_erased(CardToken.objects.only("nonce", "ciphertext").get(pk=obj.pk))

    @admin.display(description="audit history")
    def history(self, obj: CardToken) -> str:
        return audit_history("ledger.cardtoken", obj.pk)

    def operator_tools(self, request, obj):
        return [("Erase cardholder data", self.action_url("erase", obj))]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/erase/", view(self.erase_view), name="ledger_cardtoken_erase"),
            *super().get_urls(),
        ]

    def erase_view(self, request, object_id):
        token = get_or_404(CardToken, pk=object_id)
        page = ActionPage(
            title="Erase this cardholder's personal data",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_cardholder_erase(
                token_id=token.pk, reason=data["reason"]
            ),
            success=lambda erasure: (
                f"Cardholder erased: {sum(erasure.anonymised.values())} rows anonymised and "
                "the key destroyed. The card can no longer be charged; the audit log still "
                "verifies and reads their data as erased."
            ),
            noun="card",
            summary=[
                ("card", str(token)),
                ("merchant", token.merchant.name),
                (
                    "what happens",
                    "the card's vault data and fingerprint, and the free texts of every "
                    "payment it made, are emptied; its data subject key is destroyed",
                ),
            ],
        )
        return render_action(request, self, token, page, self.change_url(token))

    def get_queryset(self, request):
        # The secret columns are never even loaded.
        return super().get_queryset(request).defer("ciphertext", "nonce", "fingerprint")
