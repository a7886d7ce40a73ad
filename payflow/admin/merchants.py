"""Admin of merchants and their API keys: create, suspend and reactivate a merchant; issue
a key (its secret shown once) and revoke one."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html_join

from ledger import ids
from ledger.currencies import EXPONENTS
from ledger.models import ApiKey, ApiKeyMode, Merchant, MerchantStatus
from ledger.selectors import merchant_balances
from ledger.services.api_keys import PREFIX_LENGTH
from payflow import operations
from payflow.admin.base import (
    ActionPage,
    ReadOnlyAdmin,
    ReasonForm,
    get_or_404,
    one_selected,
    render_action,
)
from payflow.admin.display import money_html, parse_object_id
from payflow.admin.history import audit_history


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
                    money_html(values["pending"], currency),
                    money_html(values["available"], currency),
                    money_html(values["receivable"], currency),
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
    search_help_text = (
        "A key as shown (sk_test_abc123…) or its prefix, its name, a merchant's name."
    )

    def get_search_results(self, request, queryset, search_term):
        # a key as the admin shows it: sk_<mode>_<prefix>… (or the whole secret): its prefix
        term = search_term.strip().rstrip("…")
        if term.startswith(("sk_test_", "sk_live_")):
            mode, random_part = term.split("_", 2)[1:]
            found = queryset.filter(mode=mode, prefix__startswith=random_part[:PREFIX_LENGTH])
            return found, False
        return super().get_search_results(request, queryset, search_term)

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
        return one_selected(self, request, queryset, "revoke")

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
