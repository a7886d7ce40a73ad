"""``manage.py outbox_status``: the outbox backlog and its dead events (read only).

Putting a dead event back is an operator action, audited with who and why:
``manage.py outbox_requeue EVENT_ID --reason … --by …`` (or the admin's *Requeue*).
"""

import argparse

from django.core.management.base import BaseCommand, CommandError

from outbox.models import EventStatus, OutboxEvent
from outbox.services import outbox_backlog


class Command(BaseCommand):
    help = (
        "Show the outbox backlog and dead events. To requeue a dead one (audited): "
        "manage.py outbox_requeue EVENT_ID --reason TEXT --by NAME."
    )

    def add_arguments(self, parser):
        parser.add_argument("--requeue", metavar="EVENT_ID", help=argparse.SUPPRESS)  # moved
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args, requeue, limit, **options):
        if requeue:
            raise CommandError(
                "requeueing is an audited operator action: run "
                "manage.py outbox_requeue EVENT_ID --reason TEXT --by NAME"
            )
        if limit < 0:
            raise CommandError("--limit must be 0 or more")
        backlog = outbox_backlog()
        age = backlog.oldest_pending_age_seconds
        self.stdout.write(
            f"pending {backlog.pending}  dead {backlog.dead}  published {backlog.published}  "
            f"oldest pending {'-' if age is None else f'{age:.1f}s'}"
        )
        for event in OutboxEvent.objects.filter(status=EventStatus.DEAD).order_by("id")[:limit]:
            self.stdout.write(
                f"dead {event.id} {event.event_type} {event.aggregate_id}#{event.sequence} "
                f"attempts={event.attempts} error={event.last_error[:120]}"
            )
