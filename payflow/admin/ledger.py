"""Admin of the ledger: merchants and keys, transactions, card tokens, journal, balances."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html_join

from ledger import ids
from ledger.currencies import EXPONENTS
from ledger.models import (
    Account,
    ApiKey,
    ApiKeyMode,
    CardToken,
    JournalEntry,
    JournalLine,
    Merchant,
    MerchantStatus,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.selectors import merchant_balances
from payflow import operations
from payflow.admin.base import (
    ActionPage,
    AmountReasonForm,
    ReadOnlyAdmin,
    ReasonForm,
    get_or_404,
    render_action,
)
from payflow.admin.history import audit_history, outbox_history

_TRANSACTION_PREFIXES = {
    ids.PREFIXES[kind]: kind for kind in ("payment", "refund", "chargeback", "payout")
}


def money(amount: int, currency: str) -> str:
    """``2500 (25.00 EUR)``: the integer the ledger holds, and how a human reads it."""
    exponent = EXPONENTS.get(currency, 2)
    major = f"{amount / 10**exponent:.{exponent}f}" if exponent else str(amount)
    return f"{amount} ({major} {currency})"


def public_id(txn: Transaction) -> str:
    return ids.encode(txn.type, txn.pk)


def parse_object_id(term: str) -> tuple[str, uuid.UUID] | None:
    """``("transaction" | "merchant" | "uuid", id)`` for a public or plain id, else None."""
    prefix, _, hex_part = term.partition("_")
    if hex_part and prefix in _TRANSACTION_PREFIXES:
        try:
            return "transaction", ids.decode(_TRANSACTION_PREFIXES[prefix], term)
        except Exception:
            return None
    if hex_part and prefix == ids.PREFIXES["merchant"]:
        try:
            return "merchant", ids.decode("merchant", term)
        except Exception:
            return None
    try:
        return "uuid", uuid.UUID(term)
    except ValueError:
        return None


# --- merchants and keys ---------------------------------------------------------------


class MerchantCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    default_currency = forms.ChoiceField(
        choices=[(code, code) for code in sorted(EXPONENTS)], initial="EUR"
    )
    settlement_delay_days = forms.IntegerField(min_value=0, max_value=60, initial=2)
    reason = ReasonForm.base_fields["reason"]
    field_order = ["name", "default_currency", "settlement_delay_days", "reason"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A merchant needs a name.")
        return name


class ApiKeyIssueForm(ReasonForm):
    name = forms.CharField(max_length=100, required=False, help_text="e.g. 'web shop'")
    mode = forms.ChoiceField(choices=ApiKeyMode.choices, initial=ApiKeyMode.TEST)
    field_order = ["name", "mode", "reason"]


@admin.register(Merchant)
class MerchantAdmin(ReadOnlyAdmin):
    operate_permission = "ledger.change_merchant"
    list_display = ("name", "public_id", "status", "default_currency", "created_at")
    list_filter = ("status", "default_currency")
    search_fields = ("name",)
    search_help_text = "Name, or id (acct_… or UUID)."
    fields = (
        "public_id",
        "name",
        "status",
        "default_currency",
        "settlement_delay_days",
        "legal_hold",
        "created_at",
        "version",
        "balances",
        "api_keys",
        "history",
    )
    readonly_fields = fields

    @admin.display(description="id")
    def public_id(self, obj: Merchant) -> str:
        return ids.encode("merchant", obj.pk)

    @admin.display(description="balances (from the journal)")
    def balances(self, obj: Merchant) -> str:
        rows = [
            (mode, currency, values)
            for livemode, mode in ((True, "live"), (False, "test"))
            for currency, values in sorted(merchant_balances(obj, livemode=livemode).items())
        ]
        if not rows:
            return "No journal lines yet."
        return format_html_join(
            "",
            "<div>{} {}: pending {} · available {} · receivable {}</div>",
            (
                (
                    mode,
                    currency,
                    money(values["pending"], currency),
                    money(values["available"], currency),
                    money(values["receivable"], currency),
                )
                for mode, currency, values in rows
            ),
        )

    @admin.display(description="API keys")
    def api_keys(self, obj: Merchant) -> str:
        keys = ApiKey.objects.filter(merchant=obj).order_by("-created_at")
        return (
            format_html_join(
                "",
                "<div><a href='{}'>{}</a> {} — {}</div>",
                (
                    (
                        reverse("admin:ledger_apikey_change", args=[key.pk]),
                        key.masked,
                        key.name,
                        "active" if key.is_active else f"revoked {key.revoked_at:%Y-%m-%d}",
                    )
                    for key in keys
                ),
            )
            or "None."
        )

    @admin.display(description="audit history")
    def history(self, obj: Merchant) -> str:
        return audit_history("ledger.merchant", obj.pk)

    def get_search_results(self, request, queryset, search_term):
        parsed = parse_object_id(search_term.strip())
        if parsed and parsed[0] in ("merchant", "uuid"):
            return queryset.filter(pk=parsed[1]), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.add_merchant")

    def operator_tools(self, request, obj):
        toggle = "reactivate" if obj.status == MerchantStatus.SUSPENDED else "suspend"
        tools = [(toggle.capitalize(), self.action_url(toggle, obj))]
        if request.user.has_perm("ledger.add_apikey"):
            tools.append(("Issue an API key", self.action_url("issue_key", obj)))
        return tools

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/suspend/", view(self.suspend_view), name="ledger_merchant_suspend"
            ),
            path(
                "<path:object_id>/reactivate/",
                view(self.reactivate_view),
                name="ledger_merchant_reactivate",
            ),
            path(
                "<path:object_id>/issue-key/",
                view(self.issue_key_view),
                name="ledger_merchant_issue_key",
            ),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            return super().add_view(request, form_url, extra_context)  # Django's 403

        def perform(data):
            return operations.operator_merchant_create(
                name=data["name"],
                default_currency=data["default_currency"],
                settlement_delay_days=data["settlement_delay_days"],
                reason=data["reason"],
            )

        page = ActionPage(
            title="Create a merchant",
            form_class=MerchantCreateForm,
            perform=perform,
            success=lambda merchant: f"Merchant {merchant.name} created.",
            noun="merchant",
            respond=lambda merchant: HttpResponseRedirect(self.change_url(merchant)),
        )
        changelist = reverse("admin:ledger_merchant_changelist")
        return render_action(request, _Operate(self, "ledger.add_merchant"), None, page, changelist)

    def _status_view(self, request, object_id, active: bool):
        merchant = get_or_404(Merchant, pk=object_id)
        page = ActionPage(
            title="Reactivate this merchant" if active else "Suspend this merchant",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_merchant_set_active(
                merchant_id=merchant.pk, active=active, reason=data["reason"]
            ),
            success=lambda m: f"{m.name} is now {m.status}.",
            noun="merchant",
            summary=[("merchant", merchant.name), ("status", merchant.status)],
        )
        return render_action(request, self, merchant, page, self.change_url(merchant))

    def suspend_view(self, request, object_id):
        return self._status_view(request, object_id, active=False)

    def reactivate_view(self, request, object_id):
        return self._status_view(request, object_id, active=True)

    def issue_key_view(self, request, object_id):
        merchant = get_or_404(Merchant, pk=object_id)

        def respond(issued) -> HttpResponse:
            response = TemplateResponse(
                request,
                "admin/payflow/secret_once.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "API key issued",
                    "merchant": merchant,
                    "secret": issued.secret,
                    "done_url": self.change_url(merchant),
                },
            )
            response["Cache-Control"] = "no-store"
            return response

        page = ActionPage(
            title="Issue an API key",
            form_class=ApiKeyIssueForm,
            perform=lambda data: operations.operator_api_key_issue(
                merchant_id=merchant.pk, name=data["name"], mode=data["mode"], reason=data["reason"]
            ),
            success=lambda issued: "",
            noun="merchant",
            summary=[("merchant", merchant.name)],
            respond=respond,
        )
        return render_action(
            request, _Operate(self, "ledger.add_apikey"), merchant, page, self.change_url(merchant)
        )


class _Operate:
    """A model admin seen through another permission (creating is ``add``, not ``change``)."""

    def __init__(self, model_admin: ReadOnlyAdmin, permission: str) -> None:
        self._admin, self._permission = model_admin, permission

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self._permission)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admin, name)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    operate_permission = "ledger.change_apikey"
    list_display = (
        "masked",
        "merchant",
        "name",
        "mode",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("mode", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "name", "merchant__name")
    list_select_related = ("merchant",)
    # Never the hash.
    fields = (
        "masked",
        "merchant",
        "name",
        "mode",
        "created_at",
        "last_used_at",
        "revoked_at",
        "version",
        "history",
    )
    readonly_fields = fields
    actions = ["revoke_selected"]

    @admin.display(description="audit history")
    def history(self, obj: ApiKey) -> str:
        return audit_history("ledger.apikey", obj.pk)

    def operator_tools(self, request, obj):
        return [("Revoke", self.action_url("revoke", obj))] if obj.is_active else []

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/revoke/", view(self.revoke_view), name="ledger_apikey_revoke"),
            *super().get_urls(),
        ]

    @admin.action(description="Revoke the selected key…", permissions=["operate"])
    def revoke_selected(self, request, queryset: QuerySet[ApiKey]):
        return _one_selected(self, request, queryset, "revoke")

    def revoke_view(self, request, object_id):
        api_key = get_or_404(ApiKey, pk=object_id)
        page = ActionPage(
            title="Revoke this API key",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_api_key_revoke(
                api_key_id=api_key.pk, reason=data["reason"]
            ),
            success=lambda key: f"Key {key.masked} revoked: it stops working now.",
            noun="key",
            summary=[("key", api_key.masked), ("merchant", api_key.merchant.name)],
        )
        return render_action(request, self, api_key, page, self.change_url(api_key))


def _one_selected(model_admin, request, queryset, action: str):
    """A changelist action on exactly one row: go to that row's confirmation page."""
    if queryset.count() != 1:
        model_admin.message_user(
            request, "Select exactly one row for this action.", level=messages.WARNING
        )
        return None
    return HttpResponseRedirect(model_admin.action_url(action, queryset.first()))


# --- transactions ---------------------------------------------------------------------


class CaptureForm(AmountReasonForm):
    amount = forms.CharField(
        required=False, max_length=15, help_text="In minor units. Empty: the whole authorization."
    )


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    operate_permission = "ledger.change_transaction"
    list_display = (
        "public_id",
        "type",
        "status",
        "amount_display",
        "captured",
        "returned",
        "merchant",
        "livemode",
        "external_reference",
        "initiated_at",
    )
    list_filter = (
        "livemode",
        "type",
        "status",
        "currency",
        "capture_method",
        ("initiated_at", admin.DateFieldListFilter),
    )
    list_select_related = ("merchant",)
    search_fields = ("external_reference",)
    search_help_text = (
        "An id (pay_…, re_…, cb_…, po_…, acct_… or a UUID), an external reference, "
        "or a merchant name."
    )
    show_full_result_count = False
    fields = (
        "public_id",
        "type",
        "status",
        "merchant",
        "amount_display",
        "captured",
        "refunded",
        "charged_back",
        "remaining",
        "capture_method",
        "parent",
        "card",
        "external_reference",
        "metadata",
        "decline_code",
        "failure_message",
        "reason",
        "initiated_at",
        "captured_at",
        "completed_at",
        "version",
        "children",
        "history",
        "events",
    )
    readonly_fields = fields
    actions = ["capture_selected", "cancel_selected", "refund_selected", "chargeback_selected"]

    @admin.display(description="id", ordering="id")
    def public_id(self, obj: Transaction) -> str:
        return public_id(obj)

    @admin.display(description="amount")
    def amount_display(self, obj: Transaction) -> str:
        return money(obj.amount, obj.currency)

    @admin.display(description="captured")
    def captured(self, obj: Transaction) -> str:
        return money(obj.captured_amount, obj.currency)

    @admin.display(description="refunded")
    def refunded(self, obj: Transaction) -> str:
        return money(obj.refunded_amount, obj.currency)

    @admin.display(description="charged back")
    def charged_back(self, obj: Transaction) -> str:
        return money(obj.charged_back_amount, obj.currency)

    @admin.display(description="returned")
    def returned(self, obj: Transaction) -> str:
        return money(obj.returned_amount, obj.currency)

    @admin.display(description="refundable")
    def remaining(self, obj: Transaction) -> str:
        return money(obj.refundable_amount, obj.currency)

    @admin.display(description="card")
    def card(self, obj: Transaction) -> str:
        token = obj.card_token
        if token is None:
            return "—"
        return f"{token.brand} •••• {token.last4} ({token.exp_month:02d}/{token.exp_year})"

    @admin.display(description="refunds and chargebacks")
    def children(self, obj: Transaction) -> str:
        rows = Transaction.objects.filter(parent=obj).order_by("id")
        return (
            format_html_join(
                "",
                "<div><a href='{}'>{}</a> {} {}</div>",
                (
                    (
                        self.change_url(child),
                        public_id(child),
                        child.status,
                        money(child.amount, child.currency),
                    )
                    for child in rows
                ),
            )
            or "None."
        )

    @admin.display(description="audit history")
    def history(self, obj: Transaction) -> str:
        return audit_history("ledger.transaction", obj.pk)

    @admin.display(description="outbox events")
    def events(self, obj: Transaction) -> str:
        return outbox_history(obj.pk)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        parsed = parse_object_id(term)
        if parsed is not None:
            kind, value = parsed
            if kind == "transaction":
                return queryset.filter(pk=value), False
            if kind == "merchant":
                return queryset.filter(merchant_id=value), False
            return queryset.filter(Q(pk=value) | Q(merchant_id=value)), False
        if "_" in term and term.split("_", 1)[0] in (*_TRANSACTION_PREFIXES, "acct"):
            return queryset.none(), False  # a malformed public id: nothing, not an error
        return queryset.filter(
            Q(external_reference=term) | Q(merchant__name__icontains=term)
        ), False

    def operator_tools(self, request, obj):
        if obj.type != TransactionType.PAYMENT:
            return []
        tools = []
        if obj.status == TransactionStatus.AUTHORIZED:
            tools += [
                ("Capture", self.action_url("capture", obj)),
                ("Cancel", self.action_url("cancel", obj)),
            ]
        if obj.status in (TransactionStatus.CAPTURED, TransactionStatus.SETTLED):
            tools += [
                ("Refund", self.action_url("refund", obj)),
                ("Chargeback", self.action_url("chargeback", obj)),
            ]
        return tools

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            *(
                path(
                    f"<path:object_id>/{name}/",
                    view(getattr(self, f"{name}_view")),
                    name=f"ledger_transaction_{name}",
                )
                for name in ("capture", "cancel", "refund", "chargeback")
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Capture the selected payment…", permissions=["operate"])
    def capture_selected(self, request, queryset):
        return _one_selected(self, request, queryset, "capture")

    @admin.action(description="Cancel the selected payment…", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        return _one_selected(self, request, queryset, "cancel")

    @admin.action(description="Refund the selected payment…", permissions=["operate"])
    def refund_selected(self, request, queryset):
        return _one_selected(self, request, queryset, "refund")

    @admin.action(description="Book a chargeback on the selected payment…", permissions=["operate"])
    def chargeback_selected(self, request, queryset):
        return _one_selected(self, request, queryset, "chargeback")

    def _payment_page(self, request, object_id, title, form_class, perform, success):
        payment = get_or_404(Transaction, pk=object_id)
        page = ActionPage(
            title=title,
            form_class=form_class,
            perform=lambda data: perform(
                payment_id=payment.pk,
                expected_version=data.get("expected_version") or payment.version,
                reason=data["reason"],
                **({"amount": data["amount"]} if "amount" in data else {}),
            ),
            success=success,
            noun=payment.type,
            initial={"expected_version": payment.version},
            summary=[
                ("payment", public_id(payment)),
                ("status", payment.status),
                ("authorized", money(payment.amount, payment.currency)),
                ("captured", money(payment.captured_amount, payment.currency)),
                ("refundable", money(payment.refundable_amount, payment.currency)),
                ("version", payment.version),
            ],
        )
        return render_action(request, self, payment, page, self.change_url(payment))

    def capture_view(self, request, object_id):
        return self._payment_page(
            request,
            object_id,
            "Capture this payment",
            CaptureForm,
            operations.operator_payment_capture,
            lambda p: f"Captured {money(p.captured_amount, p.currency)} of {public_id(p)}.",
        )

    def cancel_view(self, request, object_id):
        return self._payment_page(
            request,
            object_id,
            "Cancel this payment",
            ReasonForm,
            operations.operator_payment_cancel,
            lambda p: f"{public_id(p)} cancelled.",
        )

    def refund_view(self, request, object_id):
        return self._payment_page(
            request,
            object_id,
            "Refund this payment",
            AmountReasonForm,
            operations.operator_refund_create,
            lambda r: f"Refunded {money(r.amount, r.currency)}: {public_id(r)}.",
        )

    def chargeback_view(self, request, object_id):
        return self._payment_page(
            request,
            object_id,
            "Book a chargeback",
            AmountReasonForm,
            operations.operator_chargeback_create,
            lambda c: f"Chargeback of {money(c.amount, c.currency)} booked: {public_id(c)}.",
        )


# --- card tokens, journal, balances ---------------------------------------------------


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


class JournalLineInline(admin.TabularInline):
    model = JournalLine
    fields = ("account", "amount", "currency")
    readonly_fields = fields
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
    fields = ("id", "kind", "merchant", "transaction", "description", "posted_at")
    readonly_fields = fields
    inlines = [JournalLineInline]
    show_full_result_count = False


@admin.register(JournalLine)
class JournalLineAdmin(ReadOnlyAdmin):
    list_display = ("id", "entry", "account", "amount", "currency")
    list_filter = ("currency", "account__kind")
    list_select_related = ("entry", "account")
    show_full_result_count = False


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
        total = int(obj.lines_total or 0)
        # Merchant liabilities are credit-normal: what the platform owes is minus the sum.
        value = total if obj.kind == "merchant_receivable" or obj.merchant_id is None else -total
        return money(value, obj.currency)

    @admin.display(description="running balance (available only)")
    def tracked_balance(self, obj: Account) -> str:
        return money(obj.balance, obj.currency) if obj.kind == "merchant_available" else "—"
