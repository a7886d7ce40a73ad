"""Platform tasks."""

import os
import socket

from celery import shared_task


@shared_task(name="payflow.ping")
def ping() -> dict[str, object]:
    """Say which process and host ran the task (used to check a worker is really there)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


@shared_task(name="payflow.idempotency_purge")
def idempotency_purge(max_batches: int = 100) -> dict[str, int]:
    """Delete idempotency records past their retention, in small batches (Galera-friendly)."""
    from payflow.api.idempotency import idempotency_purge as purge_batch

    deleted = 0
    for _ in range(max_batches):
        batch = purge_batch()
        deleted += batch
        if not batch:
            break
    return {"deleted": deleted}
