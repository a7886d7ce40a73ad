"""``manage.py outbox_relay``: publish the outbox to Kafka until SIGTERM
(``outbox.relay.RelayLoop``). Any number of copies may run: each partition is relayed
under its lease, so two copies share the partitions and never publish one at once."""

from django.conf import settings
from django.core.management.base import BaseCommand

from outbox.relay import RelayLoop, run_forever
from payflow.platform import context, lifecycle


class Command(BaseCommand):
    help = (
        "Relay pending outbox events to Kafka, polling at once after a batch and up to "
        "OUTBOX_RELAY_IDLE_INTERVAL seconds apart while idle. --once: one round, then exit."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one round, then exit")

    def handle(self, *args, once=False, **options):
        loop = RelayLoop()
        with context.replaced(context.AuditContext(**context.system_actor("outbox-relay"))):
            if once:
                published = loop.step()
                self.stdout.write(f"published {published}")
                return
            stopping = lifecycle.stop_on_signals()
            heartbeat_file = settings.OUTBOX_RELAY_HEARTBEAT_FILE
            heartbeat_file.parent.mkdir(parents=True, exist_ok=True)
            self.stdout.write(
                f"outbox relay: {settings.OUTBOX_RELAY_PARTITIONS} partitions, idle interval "
                f"up to {settings.OUTBOX_RELAY_IDLE_INTERVAL} s"
            )
            run_forever(loop, stop=stopping, heartbeat=heartbeat_file.touch)
            self.stdout.write(f"outbox relay stopped after {loop.published} events")
