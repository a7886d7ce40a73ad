"""Thin Celery tasks of the outbox."""

from __future__ import annotations

from celery import shared_task

from outbox import relay
from outbox.services import outbox_purge


@shared_task(name="outbox.relay_partition", ignore_result=True)
def relay_partition(partition: int) -> dict:
    """Publish one relay partition (by hand, or a nudge queued by an earlier version)."""
    report = relay.relay_partition(int(partition))
    return {"partition": partition, "published": report.published, "failed": report.failed}


@shared_task(name="outbox.relay_partitions", ignore_result=True)
def relay_partitions(partitions: list[int]) -> dict:
    """Publish the partitions one transaction wrote to (the on-commit nudge), one by one."""
    reports = [relay.relay_partition(int(partition)) for partition in partitions]
    return {
        "partitions": partitions,
        "published": sum(r.published for r in reports),
        "failed": sum(r.failed for r in reports),
    }


@shared_task(name="outbox.relay_sweep", ignore_result=True)
def relay_sweep() -> dict:
    """Publish every partition (beat, every second): delivery never depends on a nudge."""
    reports = relay.relay_all()
    return {
        "published": sum(r.published for r in reports),
        "failed": sum(r.failed for r in reports),
    }


@shared_task(name="outbox.purge", ignore_result=True)
def purge() -> dict:
    """Delete published events past their retention (beat, daily)."""
    return {"deleted": outbox_purge()}
