import json
import signal
import time
import uuid

from confluent_kafka import Consumer, KafkaException
from django.core.management.base import BaseCommand, CommandError

from payflow.platform import kafka

DEFAULT_TOPICS = [
    "transactions.initiated",
    "transactions.completed",
    "transactions.failed",
    "audit.events",
    "audit.checkpoints",
]


class Command(BaseCommand):
    help = "Print events arriving on Kafka topics (default: every PayFlow topic) until stopped."

    def add_arguments(self, parser):
        parser.add_argument("topics", nargs="*", help="topic names without the prefix")
        parser.add_argument(
            "--from-beginning", action="store_true", help="start at the oldest message"
        )
        parser.add_argument("--max-messages", type=int, default=0, help="stop after N messages")
        parser.add_argument("--timeout", type=float, default=0, help="stop after N seconds")

    def handle(self, *args, topics, from_beginning, max_messages, timeout, **options):
        try:
            config = kafka.client_config(
                **{
                    # A throwaway group: tailing must not steal partitions from real consumers.
                    "group.id": f"payflow-tail-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest" if from_beginning else "latest",
                    "enable.auto.commit": False,
                }
            )
        except kafka.KafkaUnavailable as exc:
            raise CommandError(str(exc)) from exc
        names = [kafka.topic(name) for name in (topics or DEFAULT_TOPICS)]
        consumer = Consumer(config)
        consumer.subscribe(names)
        self.stderr.write(f"tailing {', '.join(names)} on {config['bootstrap.servers']}")
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        deadline = time.monotonic() + timeout if timeout else None
        seen = 0
        try:
            while not stopping and (deadline is None or time.monotonic() < deadline):
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    if message.error().fatal():
                        raise CommandError(str(message.error()))
                    continue
                self.stdout.write(self._format(message))
                seen += 1
                if max_messages and seen >= max_messages:
                    break
        except KeyboardInterrupt:
            pass
        except KafkaException as exc:
            raise CommandError(str(exc)) from exc
        finally:
            consumer.close()

    @staticmethod
    def _format(message) -> str:
        raw = message.value() or b""
        try:
            body = json.dumps(json.loads(raw), sort_keys=True)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        key = (message.key() or b"").decode("utf-8", "replace")
        return f"{message.topic()}[{message.partition()}]@{message.offset()} key={key} {body}"
