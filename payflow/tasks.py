"""Platform tasks."""

import os
import socket

from celery import shared_task


@shared_task(name="payflow.ping")
def ping() -> dict[str, object]:
    """Say which process and host ran the task (used to check a worker is really there)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}
