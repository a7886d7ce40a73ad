"""Admin of transactions: find a payment by any of its ids; capture, cancel, refund it or
book a chargeback, each a confirmation page at the version the operator saw."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ledger import ids
from ledger.currencies import to_major
from ledger.models import JournalEntry, JournalLine, Transaction, TransactionStatus, TransactionType
from payflow import operations
from payflow.admin.base import (
    ActionPage,
    AmountReasonForm,
    ReadOnlyAdmin,
    ReasonForm,
    get_or_404,
    looks_like_a_card_number,
    one_selected,
    render_action,
)
from payflow.admin.display import (
    TRANSACTION_PREFIXES,
    money,
    money_html,
    parse_object_id,
    public_id,
)
from payflow.admin.history import audit_history, outbox_history
from payflow.platform import spreadsheets


class CaptureForm(AmountReasonForm):
    empty_means = "the whole authorization"


CSV_COLUMNS = (
    "id", "type", "status", "livemode", "merchant", "merchant_name", "currency", "amount",
    "captured", "refunded", "charged_back", "amount_minor", "captured_minor",
    "refunded_minor", "charged_back_minor", "capture_method", "parent", "external_reference",
    "decline_code", "initiated_at", "captured_at", "completed_at",
)  # fmt: skip


def _csv_row(txn: Transaction) -> tuple:
    major = [
        to_major(value, txn.currency)
        for value in (txn.amount, txn.captured_amount, txn.refunded_amount, txn.charged_back_amount)
    ]
    return (
        public_id(txn),
        txn.type,
        txn.status,
        "live" if txn.livemode else "test",
        ids.encode("merchant", txn.merchant_id),
        txn.merchant.name,
        txn.currency,
        *major,
        txn.amount,
        txn.captured_amount,
        txn.refunded_amount,
        txn.charged_back_amount,
        txn.capture_method,
        public_id(txn.parent) if txn.parent else "",
        txn.external_reference or "",
        txn.decline_code,
        *(
            moment.isoformat() if moment else ""
            for moment in (txn.initiated_at, txn.captured_at, txn.completed_at)
        ),
    )


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    operate_permission = "ledger.change_transaction"
    change_list_template = "admin/ledger/transaction/change_list.html"
    list_display = (
        "public_id",
        "type",
        "status",
        "amount_display",
        "captured_returned",
        "merchant",
        "mode",
        "external_reference",
        "initiated",
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
        "journal",
        "history",
        "events",
    )
    readonly_fields = fields
    actions = ["capture_selected", "cancel_selected", "refund_selected", "chargeback_selected"]

    @admin.display(description="id", ordering="id")
    def public_id(self, obj: Transaction) -> str:
        return public_id(obj)

    @admin.display(description="captured / returned")
    def captured_returned(self, obj: Transaction) -> str:
        return format_html(
            "{} / {}",
            money_html(obj.captured_amount, obj.currency),
            money_html(obj.returned_amount, obj.currency),
        )

    @admin.display(description="mode", ordering="livemode")
    def mode(self, obj: Transaction) -> str:
        return "live" if obj.livemode else "test"

    @admin.display(description="initiated (UTC)", ordering="initiated_at")
    def initiated(self, obj: Transaction) -> str:
        return obj.initiated_at.strftime("%Y-%m-%d %H:%M")

    @admin.display(description="amount")
    def amount_display(self, obj: Transaction) -> str:
        return money_html(obj.amount, obj.currency)

    @admin.display(description="captured")
    def captured(self, obj: Transaction) -> str:
        return money_html(obj.captured_amount, obj.currency)

    @admin.display(description="refunded")
    def refunded(self, obj: Transaction) -> str:
        return money_html(obj.refunded_amount, obj.currency)

    @admin.display(description="charged back")
    def charged_back(self, obj: Transaction) -> str:
        return money_html(obj.charged_back_amount, obj.currency)

    @admin.display(description="returned")
    def returned(self, obj: Transaction) -> str:
        return money_html(obj.returned_amount, obj.currency)

    @admin.display(description="refundable")
    def remaining(self, obj: Transaction) -> str:
        return money_html(obj.refundable_amount, obj.currency)

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
                        money_html(child.amount, child.currency),
                    )
                    for child in rows
                ),
            )
            or "None."
        )

    @admin.display(description="journal")
    def journal(self, obj: Transaction) -> str:
        """Every journal entry the transaction and its refunds and chargebacks posted, each
        line in major units (positive debit, negative credit), with a link to its account."""
        entries = JournalEntry.objects.filter(Q(transaction=obj) | Q(transaction__parent=obj))
        lines = (
            JournalLine.objects.filter(entry__in=entries)
            .select_related("entry", "entry__transaction", "account")
            .order_by("entry__posted_at", "entry_id", "id")
        )
        rows = format_html_join(
            "",
            "<tr class='journal-line'><td>{}</td><td>{}</td><td>{}</td>"
            "<td><a href='{}'>{}</a></td><td>{}</td><td>{}</td></tr>",
            (
                (
                    line.entry.posted_at.strftime("%Y-%m-%d %H:%M:%S"),
                    line.entry.kind,
                    public_id(line.entry.transaction) if line.entry.transaction else "—",
                    reverse("admin:ledger_account_change", args=[line.account_id]),
                    f"{line.account.kind} ({'live' if line.account.livemode else 'test'})",
                    money_html(line.amount, line.currency) if line.amount > 0 else "",
                    money_html(-line.amount, line.currency) if line.amount < 0 else "",
                )
                for line in lines
            ),
        )
        if not rows:
            return "No journal entries."
        return format_html(
            "<table id='journal-lines'><thead><tr><th>posted (UTC)</th><th>entry</th>"
            "<th>for</th><th>account</th><th>debit</th><th>credit</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    def audit_record_url(self, obj: Transaction) -> str:
        return reverse("audit:record_by_public_id", args=[public_id(obj)])

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
        if "_" in term and term.split("_", 1)[0] in (*TRANSACTION_PREFIXES, "acct"):
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

    def export_view(self, request):
        """The transactions the list shows (its filters, search and order), every one and
        not only the page, as CSV for a spreadsheet, streamed. Amounts in major units with
        the minor units beside them; cells that look like formulas are quoted."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if looks_like_a_card_number(request.GET.get("q", "")):
            return HttpResponseBadRequest(
                "That search looks like a card number: nothing is searched by one.",
                content_type="text/plain; charset=utf-8",
            )
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(
                "These filters cannot be applied: open the list, filter it again and export.",
                content_type="text/plain; charset=utf-8",
            )
        rows = changelist.get_queryset(request).select_related("merchant", "parent")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            spreadsheets.csv_chunks(CSV_COLUMNS, (_csv_row(txn) for txn in rows.iterator(2000))),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="transactions-{stamp}.csv"'
        return response

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("export.csv", view(self.export_view), name="ledger_transaction_export"),
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
        return one_selected(self, request, queryset, "capture")

    @admin.action(description="Cancel the selected payment…", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        return one_selected(self, request, queryset, "cancel")

    @admin.action(description="Refund the selected payment…", permissions=["operate"])
    def refund_selected(self, request, queryset):
        return one_selected(self, request, queryset, "refund")

    @admin.action(description="Book a chargeback on the selected payment…", permissions=["operate"])
    def chargeback_selected(self, request, queryset):
        return one_selected(self, request, queryset, "chargeback")

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
            form_kwargs=(
                {"currency": payment.currency} if issubclass(form_class, AmountReasonForm) else None
            ),
            summary=[
                ("payment", public_id(payment)),
                ("status", payment.status),
                ("authorized", money_html(payment.amount, payment.currency)),
                ("captured", money_html(payment.captured_amount, payment.currency)),
                ("refundable", money_html(payment.refundable_amount, payment.currency)),
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
