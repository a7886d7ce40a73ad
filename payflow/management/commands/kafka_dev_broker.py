from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from payflow.platform import kafka_mock


class Command(BaseCommand):
    help = (
        "Run the embedded development Kafka broker (librdkafka's mock cluster, real Kafka "
        "protocol over TCP) until stopped, and publish its bootstrap address to "
        "KAFKA_DEV_BOOTSTRAP_FILE."
    )

    def add_arguments(self, parser):
        parser.add_argument("--brokers", type=int, default=3)
        parser.add_argument("--bootstrap-file", default=str(settings.KAFKA_DEV_BOOTSTRAP_FILE))

    def handle(self, *args, brokers: int, bootstrap_file: str, **options):
        kafka_mock.serve(Path(bootstrap_file), brokers)
