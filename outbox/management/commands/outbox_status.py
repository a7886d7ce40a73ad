from django.core.management.base import BaseCommand, CommandError

from outbox.models import EventStatus, OutboxEvent
from outbox.services import NotDead, outbox_backlog, outbox_requeue


class Command(BaseCommand):
    help = "Show the outbox backlog and dead events; --requeue EVENT_ID puts a dead one back."

    def add_arguments(self, parser):
        parser.add_argument("--requeue", metavar="EVENT_ID")
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args, requeue, limit, **options):
        if requeue:
            try:
                event = outbox_requeue(event_id=requeue)
            except (NotDead, ValueError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"requeued {event.id} ({event.event_type})")
            return
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
