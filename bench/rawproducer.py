"""The relay's ceiling: the same messages produced by a bare confluent-kafka producer.

``python -m bench.rawproducer BOOTSTRAP PAYLOADS.jsonl`` reads the backlog's exact messages
(topic, key, value, headers; written by ``bench.djtasks relay_payloads``) into memory, then
produces them all with the relay's producer settings (idempotent, ``acks=all``, lz4,
``linger.ms=5``) and waits for every delivery report. No database, no Django.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Producer

CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 5,
    "message.timeout.ms": 30000,
    "log_level": 3,
}


def main(argv: list[str]) -> int:
    bootstrap, path = argv[1], argv[2]
    with open(path) as source:
        messages = [json.loads(line) for line in source]
    producer = Producer({"bootstrap.servers": bootstrap, **CONFIG})
    producer.list_topics(timeout=10)  # connected before the clock starts, like the relay
    delivered = failed = 0

    def report(error, message) -> None:
        nonlocal delivered, failed
        if error is None:
            delivered += 1
        else:
            failed += 1

    started = time.perf_counter()
    for topic, key, value, headers in messages:
        while True:
            try:
                producer.produce(
                    topic,
                    key=key.encode(),
                    value=value.encode(),
                    headers=[(name, text.encode()) for name, text in headers],
                    on_delivery=report,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "messages": len(messages),
                "delivered": delivered,
                "failed": failed,
                "seconds": seconds,
                "events_per_second": delivered / seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
