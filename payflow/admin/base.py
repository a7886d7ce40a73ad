"""What every PayFlow admin page shares: read-only model admins, operator action pages.

The admin never edits a row of the ledger, the outbox or the audit trail field by field:
every model admin here is read-only (``has_change_permission`` is False, so Django shows
its view page), and state changes are *operator actions*, each a page of its own with a
confirmation form and a required reason, calling one function of ``payflow.operations``.
Whether a user may run the actions of a model is the model's Django ``change`` permission
(``payflow.roles``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache

from ledger.currencies import from_major, to_major
from ledger.exceptions import ConcurrentUpdate, InvalidAmount, LedgerError
from outbox.services import NotDead
from payflow.jobs import JobPauseRefused, JobQueueFailed
from payflow.logging import redact_pans
from payflow.operations import OperatorActionRefused
from payflow.platform.db import TransactionRetriesExhausted


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete through the admin's forms; a view page only."""

    change_form_template = "admin/payflow/change_form.html"
    operate_permission = ""  # "app.change_model": who may run this model's actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(self.operate_permission) and request.user.has_perm(self.operate_permission)

    def operator_tools(self, request: HttpRequest, obj: Any) -> list[tuple[str, str]]:
        """(label, url) of the actions offered on ``obj``'s page."""
        return []

    def changelist_view(self, request, extra_context=None):
        term = request.GET.get("q", "")
        if term and looks_like_a_card_number(term):
            # never searched for, never written back into the search box or a link
            query = request.GET.copy()
            query.pop("q")
            messages.warning(
                request,
                "That search looked like a card number: PayFlow never searches by one (a "
                "card is found by its tok_… id or its last four digits). Nothing was searched.",
            )
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    def audit_record_url(self, obj: Any) -> str:
        """The object's history in the auditors' pages (shown to auditors), or ``""``."""
        return ""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        tools = (
            self.operator_tools(request, obj)
            if obj is not None and self.has_operate_permission(request)
            else []
        )
        record = self.audit_record_url(obj) if obj is not None else ""
        return super().change_view(
            request,
            object_id,
            form_url,
            {**(extra_context or {}), "operator_tools": tools, "audit_record_url": record},
        )

    def action_url(self, name: str, obj: Any) -> str:
        meta = self.model._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_{name}", args=[obj.pk])

    def change_url(self, obj: Any) -> str:
        meta = self.model._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def looks_like_a_card_number(text: str) -> bool:
    """Whether ``text`` holds a card-number-shaped digit run (``payflow.logging``'s rule)."""
    return redact_pans(text) != text


def get_or_404(model: Any, pk: Any) -> Any:
    """The row, or 404 for a missing or malformed id (never a 500)."""
    try:
        return model.objects.get(pk=pk)
    except (model.DoesNotExist, ValidationError, ValueError) as exc:
        raise Http404(f"no such {model._meta.verbose_name}") from exc


def one_selected(
    model_admin: ReadOnlyAdmin, request: HttpRequest, queryset: Any, action: str
) -> HttpResponse | None:
    """A changelist action on exactly one row: go to that row's confirmation page."""
    if queryset.count() != 1:
        model_admin.message_user(
            request, "Select exactly one row for this action.", level=messages.WARNING
        )
        return None
    return HttpResponseRedirect(model_admin.action_url(action, queryset.first()))


class ReasonForm(forms.Form):
    """Every operator action asks why; the reason goes into every audit row it writes."""

    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why you are doing this. Recorded in the audit trail with your name.",
    )
    # The version the operator saw when the page was opened: a change made since then
    # refuses the action instead of acting on something the operator did not see.
    expected_version = forms.IntegerField(
        widget=forms.HiddenInput,
        required=False,
        min_value=1,
        error_messages={
            "invalid": "This page is damaged or out of date: reopen it from the object's page.",
            "min_value": "This page is damaged or out of date: reopen it from the object's page.",
        },
    )

    def clean_reason(self) -> str:
        reason = " ".join(self.cleaned_data["reason"].split())
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class AmountReasonForm(ReasonForm):
    """An amount typed in the currency's major units (``12.50`` EUR, ``1250`` JPY), stored
    in minor units (``ledger.currencies.from_major``), and a reason."""

    amount = forms.CharField(required=False, max_length=20)
    field_order = ["amount", "reason"]
    empty_means = "all that remains"

    def __init__(self, *args: Any, currency: str = "EUR", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        field = self.fields["amount"]
        field.label = f"Amount ({currency})"
        field.help_text = (
            f"In {currency}, e.g. {to_major(1250, currency)}. Empty: {self.empty_means}."
        )
        field.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off"})

    def clean_amount(self) -> int | None:
        value = (self.cleaned_data["amount"] or "").strip()
        if not value:
            return None
        try:
            return from_major(value, self.currency)
        except InvalidAmount as exc:
            # what was typed is not written back (it could be a card number)
            self.data = {**self.data.dict(), self.add_prefix("amount"): ""}  # type: ignore[attr-defined]
            raise forms.ValidationError(exc.message) from None


def refusal_message(exc: Exception, noun: str) -> str:
    """What the operator reads when the service refused: the service's own words."""
    if isinstance(exc, ConcurrentUpdate):
        return (
            f"This {noun} changed since you opened it (it is now at version "
            f"{exc.current_version}). Nothing was done: reopen it, check it and try again."
        )
    if isinstance(exc, LedgerError):
        return f"Refused: {exc.message}"
    if isinstance(exc, NotDead):
        return "Refused: this event is not dead (it was requeued or delivered meanwhile)."
    if isinstance(exc, OperatorActionRefused | JobPauseRefused | JobQueueFailed):
        return f"Refused: {exc}."
    if isinstance(exc, TransactionRetriesExhausted):
        return "The database was too busy to complete this; nothing was done. Try again."
    raise exc


REFUSALS = (
    LedgerError,
    NotDead,
    OperatorActionRefused,
    JobPauseRefused,
    JobQueueFailed,
    TransactionRetriesExhausted,
)


@dataclass
class ActionPage:
    """One operator action's confirmation page."""

    title: str
    form_class: type[forms.Form]
    perform: Callable[[dict[str, Any]], Any]  # cleaned data → result; raises REFUSALS
    success: Callable[[Any], str]  # result → message
    noun: str = "object"
    initial: dict[str, Any] | None = None
    summary: list[tuple[str, Any]] | None = None
    form_kwargs: dict[str, Any] | None = None  # e.g. the currency of an amount form
    # result → a response of its own (the API key's secret page) instead of a redirect
    respond: Callable[[Any], HttpResponse] | None = None


@never_cache
def render_action(
    request: HttpRequest,
    model_admin: ReadOnlyAdmin,
    obj: Any,
    page: ActionPage,
    done_url: str,
) -> HttpResponse:
    """GET: the confirmation form. POST: run the action; on a refusal, the form again
    with the service's message (never a 500); on success, back to the object."""
    if not model_admin.has_operate_permission(request):
        raise PermissionDenied
    data = request.POST if request.method == "POST" else None
    form = page.form_class(data, initial=page.initial or {}, **(page.form_kwargs or {}))
    if request.method == "POST" and form.is_valid():
        try:
            result = page.perform(form.cleaned_data)
        except REFUSALS as exc:
            form.add_error(None, refusal_message(exc, page.noun))
        else:
            if page.respond is not None:
                return page.respond(result)
            messages.success(request, page.success(result))
            return HttpResponseRedirect(done_url)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": page.title,
        "object": obj,
        "summary": page.summary or [],
        "form": form,
        "cancel_url": done_url,
    }
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(request, "admin/payflow/operator_action.html", context, status=status)
