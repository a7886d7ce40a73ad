"""gunicorn settings for the benchmark's web server (also: the retry counters' exit dump).

Each worker writes its ``payflow.platform.db`` retry counters to ``BENCH_COUNTERS_DIR`` when it
exits, so the report can add up the Galera retries of every worker process.
"""

import json
import os

worker_class = "gthread"
workers = int(os.environ.get("BENCH_WEB_WORKERS", "3"))
threads = int(os.environ.get("BENCH_WEB_THREADS", "4"))
keepalive = 30
backlog = 2048
accesslog = None
loglevel = "warning"


def worker_exit(server, worker):
    directory = os.environ.get("BENCH_COUNTERS_DIR")
    if not directory:
        return
    from payflow.platform import db

    counts = {"exhausted": db.TRANSACTION_RETRIES_EXHAUSTED._value.get()}
    for metric in db.TRANSACTION_RETRIES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["reason"]] = sample.value
    with open(os.path.join(directory, f"retries-{os.getpid()}.json"), "w") as out:
        json.dump(counts, out)
