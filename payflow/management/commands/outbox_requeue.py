"""``manage.py outbox_requeue EVENT_ID --reason … --by …``: put a dead outbox event back
for the relay (``payflow.operations.operator_outbox_requeue``), audited with ``--by`` as
the actor (``command:<by>``) and ``--reason``, as the admin's *Requeue* is."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from outbox.models import OutboxEvent
from outbox.services import NotDead
from payflow import operations
from payflow.platform import context


class Command(BaseCommand):
    help = "Requeue a dead outbox event (audited): EVENT_ID --reason TEXT --by NAME."

    def add_arguments(self, parser):
        parser.add_argument("event_id", help="the dead event's id (manage.py outbox_status)")
        parser.add_argument("--reason", required=True, help="why (recorded)")
        parser.add_argument("--by", required=True, help="who orders it (recorded)")

    def handle(self, *args, event_id, reason, by, **options):
        if not by.strip():
            raise CommandError("--by must name who orders the requeue")
        try:
            pk = uuid.UUID(event_id.strip())
        except ValueError:
            raise CommandError("EVENT_ID must be an outbox event's id (a UUID)") from None
        if not OutboxEvent.objects.filter(pk=pk).exists():
            raise CommandError("no outbox event has that id")
        actor = context.AuditContext(**context.system_actor(f"command:{by.strip()[:50]}"))
        with context.replaced(actor):
            try:
                event = operations.operator_outbox_requeue(event_id=pk, reason=reason)
            except NotDead as exc:
                raise CommandError(str(exc)) from None
            except operations.OperatorActionRefused as exc:
                raise CommandError(f"refused: {exc}") from None
        self.stdout.write(f"requeued {event.id} ({event.event_type}); the relay will publish it")
