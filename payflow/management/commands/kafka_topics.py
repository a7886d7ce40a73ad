"""``manage.py kafka_topics``: create PayFlow's topics with production's durability, or check
them (``--check``). compose runs it once before the app starts (service ``topics``), and
the brokers refuse to auto-create topics, so no topic ever exists with a broker's defaults
(one replica, no minimum in-sync replicas).

The topics are ``ledger.events.Topic`` (with ``KAFKA_TOPIC_PREFIX``). Producers send with
``acks=all``: with ``min.insync.replicas=2`` of 3 replicas an acknowledged event is on two
brokers' logs, and a partition with one replica left refuses writes rather than keeping an
event on one disk only. An existing topic is never changed (more partitions would move
keys to other partitions and break per-object ordering): a difference is reported.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from django.core.management.base import BaseCommand, CommandError

from ledger.events import Topic
from payflow.platform import kafka

TOPIC_CONFIG = {"unclean.leader.election.enable": "false"}


class Command(BaseCommand):
    help = (
        "Create PayFlow's Kafka topics (partitions, replication factor, min.insync.replicas) "
        "or, with --check, report how the existing ones differ. Never changes a topic."
    )

    def add_arguments(self, parser):
        parser.add_argument("--partitions", type=int, default=12)
        parser.add_argument("--replication-factor", type=int, default=3)
        parser.add_argument("--min-insync-replicas", type=int, default=2)
        parser.add_argument("--check", action="store_true", help="create nothing, only check")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")

    def handle(
        self,
        *args,
        partitions,
        replication_factor,
        min_insync_replicas,
        check,
        timeout,
        **options,
    ):
        if partitions < 1 or replication_factor < 1:
            raise CommandError("--partitions and --replication-factor must be at least 1")
        if not 1 <= min_insync_replicas <= replication_factor:
            raise CommandError(
                "--min-insync-replicas must be between 1 and --replication-factor "
                f"({replication_factor})"
            )
        wanted = [kafka.topic(topic) for topic in Topic]
        try:
            admin = AdminClient({**kafka.client_config(), "log_level": 2})
            existing = admin.list_topics(timeout=timeout).topics
        except (kafka.KafkaUnavailable, KafkaException) as exc:
            raise CommandError(f"Kafka does not answer: {_reason(exc)}") from None
        missing = [name for name in wanted if name not in existing]
        problems: list[str] = []
        if missing and check:
            problems += [f"{name}: missing" for name in missing]
        elif missing:
            problems += self._create(
                admin, missing, partitions, replication_factor, min_insync_replicas, timeout
            )
        present = [name for name in wanted if name in existing]
        for name in present:
            problems += _shape_problems(name, existing[name], partitions, replication_factor)
        problems += _config_problems(admin, present, min_insync_replicas, timeout)
        for name in present:
            if not any(problem.startswith(f"{name}:") for problem in problems):
                self.stdout.write(f"{name}: ok")
        if problems:
            raise CommandError("; ".join(problems))

    def _create(self, admin, names, partitions, replication_factor, min_insync, timeout):
        config = {**TOPIC_CONFIG, "min.insync.replicas": str(min_insync)}
        futures = admin.create_topics(
            [NewTopic(name, partitions, replication_factor, config=config) for name in names],
            request_timeout=timeout,
        )
        problems = []
        for name, future in futures.items():
            try:
                future.result(timeout=timeout + 5)
            except (KafkaException, TimeoutError) as exc:
                problems.append(f"{name}: Kafka did not create it: {_reason(exc)}")
                continue
            self.stdout.write(
                f"{name}: created ({partitions} partitions, {replication_factor} replicas, "
                f"min.insync.replicas={min_insync})"
            )
        return problems


def _shape_problems(name: str, metadata: Any, partitions: int, replication: int) -> list[str]:
    problems = []
    if len(metadata.partitions) < partitions:
        problems.append(
            f"{name}: has {len(metadata.partitions)} partitions, wants at least {partitions} "
            "(not changed here: more partitions move keys)"
        )
    replicas = {len(partition.replicas) for partition in metadata.partitions.values()}
    if replicas != {replication}:
        counts = ", ".join(str(count) for count in sorted(replicas))
        problems.append(f"{name}: has {counts} replicas per partition, wants {replication}")
    return problems


def _config_problems(
    admin: AdminClient, names: list[str], min_insync: int, timeout: float
) -> list[str]:
    if not names:
        return []
    problems = []
    resources = [ConfigResource("topic", name) for name in names]
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            entries = future.result(timeout=timeout + 5)
        except (KafkaException, TimeoutError) as exc:
            problems.append(f"{resource.name}: its configuration cannot be read: {_reason(exc)}")
            continue
        value = entries.get("min.insync.replicas")
        actual = int(value.value) if value is not None and value.value else 1
        if actual < min_insync:
            problems.append(
                f"{resource.name}: min.insync.replicas is {actual}, wants at least {min_insync}"
            )
        unclean = entries.get("unclean.leader.election.enable")
        if unclean is not None and unclean.value == "true":
            problems.append(f"{resource.name}: unclean.leader.election.enable is true")
    return problems


def _reason(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        return error.str() if hasattr(error, "str") else str(error)
    return str(exc)
