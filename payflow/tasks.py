"""Tasks of the composition root: a liveness ping, the Idempotency-Key and webhook
delivery purges."""

import os
import socket

from celery import shared_task

from payflow.models import IdempotencyRecord
from payflow.platform import db
from payflow.webhooks.endpoints import webhook_deliveries_purge, webhook_secrets_reseal


@shared_task(name="payflow.ping")
def ping() -> dict[str, object]:
    """Say which process and host ran the task (used to check a worker is really there)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


@shared_task(name="payflow.idempotency_purge")
def idempotency_purge(max_batches: int = 100) -> dict[str, int]:
    """Delete idempotency records past their retention, in small batches (Galera-friendly)."""
    deleted = 0
    for _ in range(max_batches):
        batch = db.run_atomic(IdempotencyRecord.objects.purge_expired)  # retried on 1213
        deleted += batch
        if not batch:
            break
    return {"deleted": deleted}


@shared_task(name="payflow.webhook_deliveries_purge")
def webhook_deliveries_purge_task() -> dict[str, int]:
    """Delete finished webhook deliveries past ``WEBHOOK_DELIVERY_RETENTION``."""
    return {"deleted": webhook_deliveries_purge()}


@shared_task(name="payflow.webhook_secrets_reseal")
def webhook_secrets_reseal_task() -> dict[str, int]:
    """Seal webhook secrets under the vault's current key (after a vault key rotation)."""
    return {"resealed": webhook_secrets_reseal()}
