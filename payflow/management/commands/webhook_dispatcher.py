"""``manage.py webhook_dispatcher``: deliver merchant webhooks until SIGTERM
(``payflow.webhooks.dispatch``). Any number of copies may run: Kafka's consumer group
shares the topics' partitions, and each delivery attempt is claimed by compare-and-set."""

from django.core.management.base import BaseCommand, CommandError

from payflow.platform import kafka
from payflow.webhooks import dispatch


class Command(BaseCommand):
    help = "Read the transaction events from Kafka and deliver them to merchants' webhooks."

    def handle(self, *args, **options):
        try:
            dispatch.run_until_signalled()
        except kafka.KafkaUnavailable as exc:
            raise CommandError(str(exc)) from exc
