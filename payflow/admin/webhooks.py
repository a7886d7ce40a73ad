"""Admin of merchant webhooks: endpoints (why one was disabled, enabling it again) and
deliveries (every attempt; resending one). Both are audited operator actions
(``payflow.operations``); the secrets are never shown."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.utils.html import format_html_join

from ledger import ids
from payflow import operations
from payflow.admin.base import ActionPage, ReadOnlyAdmin, ReasonForm, get_or_404
from payflow.admin.base import render_action as _render_action
from payflow.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    operate_permission = "payflow.change_webhookendpoint"
    list_display = (
        "public_id",
        "merchant",
        "url",
        "livemode",
        "status",
        "disabled_reason",
        "created_at",
    )
    list_filter = ("status", "livemode", "deleted")
    search_fields = ("=merchant__id", "url")
    search_help_text = "A merchant's UUID, or part of a URL."
    exclude = ("secret_sealed", "previous_secret_sealed")
    readonly_fields = ("public_id",)

    @admin.display(description="id")
    def public_id(self, obj: WebhookEndpoint) -> str:
        return ids.encode("webhook_endpoint", obj.pk)

    def operator_tools(self, request, obj):
        if obj.status == WebhookEndpoint.Status.DISABLED and not obj.deleted:
            return [("Enable", self.action_url("enable", obj))]
        return []

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/enable/",
                view(self.enable_view),
                name="payflow_webhookendpoint_enable",
            ),
            *super().get_urls(),
        ]

    def enable_view(self, request, object_id):
        endpoint = get_or_404(WebhookEndpoint, pk=object_id)
        page = ActionPage(
            title="Enable this webhook endpoint",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_webhook_endpoint_enable(
                endpoint_id=endpoint.pk, reason=data["reason"]
            ),
            success=lambda e: f"{e.url} is enabled; its owed deliveries resume.",
            noun="endpoint",
            summary=[
                ("url", endpoint.url),
                ("status", endpoint.status),
                ("disabled because", endpoint.disabled_reason),
            ],
        )
        return _render_action(request, self, endpoint, page, self.change_url(endpoint))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    operate_permission = "payflow.change_webhookdelivery"
    list_display = (
        "event_type",
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("=event_id", "=aggregate_id")
    search_help_text = "An event's or an object's UUID."
    readonly_fields = ("every_attempt",)
    list_select_related = ("endpoint",)
    show_full_result_count = False

    @admin.display(description="event")
    def event(self, obj: WebhookDelivery) -> str:
        return ids.encode("event", obj.event_id)

    @admin.display(description="attempts, oldest first")
    def every_attempt(self, obj: WebhookDelivery) -> str:
        tries = WebhookAttempt.objects.filter(delivery=obj).order_by("id")
        return (
            format_html_join(
                "",
                "<div>{} — {} in {} ms {}</div>",
                (
                    (
                        f"{attempt.attempted_at:%Y-%m-%d %H:%M:%S}",
                        f"HTTP {attempt.status_code}" if attempt.status_code else attempt.error,
                        attempt.latency_ms,
                        attempt.response_excerpt[:120],
                    )
                    for attempt in tries
                ),
            )
            or "none yet"
        )

    def operator_tools(self, request, obj):
        return [("Resend", self.action_url("resend", obj))]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/resend/",
                view(self.resend_view),
                name="payflow_webhookdelivery_resend",
            ),
            *super().get_urls(),
        ]

    def resend_view(self, request, object_id):
        delivery = get_or_404(WebhookDelivery, pk=object_id)
        page = ActionPage(
            title="Resend this event to the endpoint",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_webhook_resend(
                delivery_id=delivery.pk, reason=data["reason"]
            ),
            success=lambda d: f"{d.event_type} is pending again; the dispatcher sends it now.",
            noun="delivery",
            summary=[
                ("event", ids.encode("event", delivery.event_id)),
                ("endpoint", delivery.endpoint.url),
                ("status", delivery.status),
                ("attempts", delivery.attempts),
            ],
        )
        return _render_action(request, self, delivery, page, self.change_url(delivery))
