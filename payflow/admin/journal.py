"""Admin of the journal and the balances: entries with their lines, accounts with the
balance their lines give (by the ledger's sign rule) next to the running balance."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q, Sum

from ledger.models import Account, JournalEntry, JournalLine
from ledger.selectors import account_balance_of_lines
from payflow.admin.base import ReadOnlyAdmin
from payflow.admin.display import looks_like_public_id, money_html, uuid_of_public_id


class JournalLineInline(admin.TabularInline):
    model = JournalLine
    fields = ("account", "amount_display")
    readonly_fields = fields

    @admin.display(description="amount (debit +, credit -)")
    def amount_display(self, obj: JournalLine) -> str:
        return money_html(obj.amount, obj.currency)

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "merchant", "livemode", "transaction", "posted_at")
    list_filter = ("livemode", "kind")
    list_select_related = ("merchant", "transaction")
    search_fields = ("merchant__name",)
    search_help_text = (
        "A transaction's id (pay_…, re_…, cb_…, po_…), a merchant's (acct_…) or name."
    )
    fields = ("id", "kind", "merchant", "transaction", "description", "posted_at")
    readonly_fields = fields
    inlines = [JournalLineInline]
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        value = uuid_of_public_id(search_term)
        if value is not None:
            return queryset.filter(
                Q(transaction_id=value) | Q(transaction__parent_id=value) | Q(merchant_id=value)
            ), False
        if looks_like_public_id(search_term):
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(JournalLine)
class JournalLineAdmin(ReadOnlyAdmin):
    list_display = ("id", "entry", "account", "amount_display")
    list_filter = ("currency", "account__kind")
    list_select_related = ("entry", "account")
    show_full_result_count = False

    @admin.display(description="amount (debit +, credit -)", ordering="amount")
    def amount_display(self, obj: JournalLine) -> str:
        return money_html(obj.amount, obj.currency)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    """Balances per merchant and currency, derived from the journal lines."""

    list_display = (
        "merchant", "livemode", "kind", "currency", "balance_from_lines", "tracked_balance",
    )  # fmt: skip
    list_filter = ("livemode", "kind", "currency")
    list_select_related = ("merchant",)
    search_fields = ("merchant__name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(lines_total=Sum("lines__amount"))

    @admin.display(description="balance (from lines)")
    def balance_from_lines(self, obj: Account) -> str:
        total = getattr(obj, "lines_total", None)  # annotated by get_queryset
        balance = account_balance_of_lines(obj, int(total or 0))
        return money_html(balance, obj.currency)

    @admin.display(description="running balance (available only)")
    def tracked_balance(self, obj: Account) -> str:
        return money_html(obj.balance, obj.currency) if obj.kind == "merchant_available" else "—"
