"""Everything on PayFlow's topics, read from the first offset to the end once a drill has
settled (no Django): one JSON line per message, ``{"topic", "partition", "offset", "id"}``,
where ``id`` is the event id header (transaction topics), the log index (``audit.events``)
or the tree size (``audit.checkpoints``); first, one line per partition,
``{"topic", "partition", "low", "high"}``: librdkafka's mock cluster keeps a bounded log
per partition, so a partition's oldest messages may have aged out (``low`` > 0), and
what was there cannot be checked.

Read after the fact rather than live: the broker keeps every message (the drill's Kafka
fault freezes it, it does not wipe it), and reading each partition up to its high
watermark cannot miss a message the way a live consumer group joining late could.

    python -m tests.drill.consumer BOOTSTRAP OUT_FILE
"""

from __future__ import annotations

import json
import sys
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ledger.events import Topic

ID_HEADERS = ("event_id", "log_index", "tree_size")


def dump(bootstrap: str, out: str, timeout: float = 30.0) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"drill-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "log_level": 2,
        }
    )
    metadata = consumer.list_topics(timeout=timeout)
    wanted: dict[tuple[str, int], int] = {}  # (topic, partition) -> high watermark
    records = open(out, "w")  # noqa: SIM115 - closed below, after the loop
    for topic in Topic:
        if str(topic) not in metadata.topics:
            continue
        for partition in metadata.topics[str(topic)].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(str(topic), partition), timeout=timeout
            )
            line = {"topic": str(topic), "partition": partition, "low": low, "high": high}
            records.write(json.dumps(line) + "\n")
            if high > low:
                wanted[(str(topic), partition)] = high
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in wanted])
    count = 0
    with records:
        while wanted:
            message = consumer.poll(timeout)
            if message is None:
                raise TimeoutError(f"no message in {timeout}s; still to read: {wanted}")
            if message.error():
                continue
            headers = {name: value for name, value in (message.headers() or [])}
            ident = next((headers[name] for name in ID_HEADERS if name in headers), b"")
            records.write(
                json.dumps(
                    {
                        "topic": message.topic(),
                        "partition": message.partition(),
                        "offset": message.offset(),
                        "id": ident.decode() if isinstance(ident, bytes) else str(ident),
                    }
                )
                + "\n"
            )
            count += 1
            place = (message.topic(), message.partition())
            if place in wanted and message.offset() + 1 >= wanted[place]:
                del wanted[place]
    consumer.close()
    return count


if __name__ == "__main__":
    print(dump(sys.argv[1], sys.argv[2]))
