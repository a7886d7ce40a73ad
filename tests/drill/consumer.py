"""Reads every message on PayFlow's topics while a drill runs (its own process, no Django):
one JSON line per message, ``{"topic", "partition", "offset", "id"}``, where ``id`` is the
event id header (transaction topics), the log index (``audit.events``) or the tree size
(``audit.checkpoints``).

Each partition is assigned from its first offset as soon as its topic exists (no consumer
group, so nothing depends on a rebalance), and read as it grows: librdkafka's mock cluster
keeps a bounded log per partition, so messages read only at the end could have aged out.
On SIGTERM it reads every partition up to its end as it is then, and exits; a partition
whose oldest messages were gone before it was read is reported on a line
``{"topic", "partition", "aged_out": N}``.

    python -m tests.drill.consumer BOOTSTRAP OUT_FILE
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ledger.events import Topic

ID_HEADERS = ("event_id", "log_index", "tree_size")


def _record(message) -> dict:
    headers = {name: value for name, value in (message.headers() or [])}
    ident = next((headers[name] for name in ID_HEADERS if name in headers), b"")
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "id": ident.decode() if isinstance(ident, bytes) else str(ident),
    }


def main(argv: list[str]) -> int:
    bootstrap, out = argv[1], argv[2]
    draining = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: draining.set())
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"drill-{uuid.uuid4().hex}",  # required; offsets are never committed
            "enable.auto.commit": False,
            "log_level": 2,
        }
    )
    assigned: set[tuple[str, int]] = set()
    last: dict[tuple[str, int], int] = {}  # the next offset to read, per partition
    first_seen: dict[tuple[str, int], int] = {}
    next_listing = 0.0
    ends: dict[tuple[str, int], int] | None = None
    with open(out, "a", buffering=1) as records:
        while True:
            now = time.monotonic()
            if now >= next_listing or (draining.is_set() and ends is None):
                try:
                    topics = consumer.list_topics(timeout=5).topics
                except KafkaException:
                    topics = {}
                new = [
                    (str(topic), partition)
                    for topic in Topic
                    if str(topic) in topics
                    for partition in topics[str(topic)].partitions
                    if (str(topic), partition) not in assigned
                ]
                if new:
                    consumer.incremental_assign(
                        [TopicPartition(t, p, OFFSET_BEGINNING) for t, p in new]
                    )
                    assigned.update(new)
                next_listing = now + 2.0
                if draining.is_set() and ends is None:
                    ends = {}
                    for place in assigned:
                        _low, high = consumer.get_watermark_offsets(
                            TopicPartition(*place), timeout=10
                        )
                        ends[place] = high
            if ends is not None and all(last.get(p, 0) >= end for p, end in ends.items()):
                break
            try:
                message = consumer.poll(0.5)
            except KafkaException:
                continue
            if message is None or message.error():
                continue
            place = (message.topic(), message.partition())
            first_seen.setdefault(place, message.offset())
            last[place] = message.offset() + 1
            records.write(json.dumps(_record(message)) + "\n")
        for (topic, partition), offset in sorted(first_seen.items()):
            if offset > 0:
                line = {"topic": topic, "partition": partition, "aged_out": offset}
                records.write(json.dumps(line) + "\n")
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
