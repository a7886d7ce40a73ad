"""Admin of the outbox: events by status, their lag, requeueing dead ones."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from ledger import ids
from outbox.models import EventStatus, OutboxEvent, public_aggregate
from outbox.services import outbox_backlog
from payflow import operations
from payflow.admin.base import (
    REFUSALS,
    ActionPage,
    ReadOnlyAdmin,
    ReasonForm,
    get_or_404,
    refusal_message,
)
from payflow.admin.base import render_action as _render_action


class RequeueForm(ReasonForm):
    ids = forms.CharField(widget=forms.HiddenInput)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    operate_permission = "outbox.change_outboxevent"
    change_list_template = "admin/outbox/outboxevent/change_list.html"
    list_display = (
        "event_type",
        "object",
        "sequence",
        "status",
        "attempts",
        "lag",
        "created_at",
        "published_at",
        "last_error",
    )
    list_filter = ("status", "livemode", "aggregate_type", "topic")
    search_fields = ("=aggregate_id", "=id")
    search_help_text = "An object's id (pay_…, re_…, acct_… or a UUID), or an event's id."
    show_full_result_count = False
    actions = ["requeue_selected"]

    @admin.display(description="object", ordering="aggregate_id")
    def object(self, obj: OutboxEvent) -> str:
        """The aggregate by the id people know (``pay_…``), its UUID when it has none."""
        return public_aggregate(obj.aggregate_type, obj.aggregate_id)

    def get_search_results(self, request, queryset, search_term):
        parsed = ids.parse(search_term)
        if parsed is not None:  # events name their aggregate by its UUID
            search_term = str(parsed[1])
        elif ids.has_public_prefix(search_term):
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="lag")
    def lag(self, obj: OutboxEvent) -> str:
        """Created → published, or created → now while it waits."""
        end = obj.published_at or timezone.now()
        return f"{(end - obj.created_at).total_seconds():.1f} s"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {**(extra_context or {}), "backlog": outbox_backlog()}
        )

    def operator_tools(self, request, obj):
        return [("Requeue", self.action_url("requeue", obj))] if obj.status == "dead" else []

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/requeue/",
                view(self.requeue_view),
                name="outbox_outboxevent_requeue",
            ),
            path("requeue/", view(self.requeue_many_view), name="outbox_outboxevent_requeue_many"),
            *super().get_urls(),
        ]

    @admin.action(description="Requeue the selected dead events…", permissions=["operate"])
    def requeue_selected(self, request, queryset):
        dead = list(queryset.filter(status=EventStatus.DEAD).values_list("pk", flat=True)[:500])
        if not dead:
            self.message_user(request, "None of the selected events is dead.", messages.WARNING)
            return None
        url = reverse("admin:outbox_outboxevent_requeue_many")
        return HttpResponseRedirect(f"{url}?ids={','.join(str(pk) for pk in dead)}")

    def requeue_view(self, request, object_id):
        event = get_or_404(OutboxEvent, pk=object_id)
        page = ActionPage(
            title="Requeue this dead event",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_outbox_requeue(
                event_id=event.pk, reason=data["reason"]
            ),
            success=lambda e: f"{e} is pending again; the relay will publish it.",
            noun="event",
            summary=[
                ("event", str(event)),
                ("status", event.status),
                ("attempts", event.attempts),
                ("last error", event.last_error),
            ],
        )
        return _render_action(request, self, event, page, self.change_url(event))

    def requeue_many_view(self, request):
        """Each event is its own transaction: one refusal does not hold back the others."""
        raw_ids = request.POST.get("ids") or request.GET.get("ids", "")
        events = list(OutboxEvent.objects.filter(pk__in=_uuids(raw_ids)))
        changelist = reverse("admin:outbox_outboxevent_changelist")

        def perform(data):
            done, refused = [], []
            for event in events:
                try:
                    done.append(
                        operations.operator_outbox_requeue(event_id=event.pk, reason=data["reason"])
                    )
                except REFUSALS as exc:
                    refused.append(f"{event}: {refusal_message(exc, 'event')}")
            for line in refused:
                messages.warning(request, line)
            return done

        page = ActionPage(
            title=f"Requeue {len(events)} dead event(s)",
            form_class=RequeueForm,
            perform=perform,
            success=lambda done: f"{len(done)} event(s) requeued.",
            noun="event",
            initial={"ids": raw_ids},
            summary=[("event", str(event)) for event in events],
        )
        return _render_action(request, self, "dead events", page, changelist)


def _uuids(raw: str) -> list[uuid.UUID]:
    found = []
    for part in raw.split(","):
        try:
            found.append(uuid.UUID(part.strip()))
        except ValueError:
            continue
    return found
