"""Operator actions and housekeeping on the outbox."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from outbox.models import EventStatus, OutboxEvent
from payflow.platform import db


class NotDead(Exception):
    """Only a dead event can be requeued."""


@db.atomic
def outbox_requeue(*, event_id) -> OutboxEvent:
    """Put a dead event back in the queue: pending, attempts reset, due now.

    One transaction, compare-and-set on the status (a concurrent requeue does nothing).
    """
    updated = OutboxEvent.objects.filter(pk=event_id, status=EventStatus.DEAD).update(
        status=EventStatus.PENDING, attempts=0, next_attempt_at=None
    )
    if not updated:
        raise NotDead(f"event {event_id} is not dead")
    return OutboxEvent.objects.get(pk=event_id)


@db.atomic
def _purge_batch(cutoff: datetime.datetime, batch_size: int) -> int:
    ids = list(
        OutboxEvent.objects.filter(
            status=EventStatus.PUBLISHED, published_at__lt=cutoff
        ).values_list("pk", flat=True)[:batch_size]
    )
    return OutboxEvent.objects.filter(pk__in=ids).delete()[0] if ids else 0


def outbox_purge(
    *, older_than_hours: int | None = None, batch_size: int = 1000, max_batches: int = 1000
) -> int:
    """Delete published events past ``OUTBOX_RETENTION_HOURS``, in small transactions
    (Galera-friendly). Pending and dead events are never purged."""
    hours = older_than_hours if older_than_hours is not None else settings.OUTBOX_RETENTION_HOURS
    cutoff = timezone.now() - datetime.timedelta(hours=hours)
    deleted = 0
    for _ in range(max_batches):
        batch = _purge_batch(cutoff, batch_size)
        deleted += batch
        if batch < batch_size:
            break
    return deleted


@dataclass
class Backlog:
    pending: int
    dead: int
    published: int | None  # None: not counted (``outbox_backlog(count_published=False)``)
    oldest_pending_age_seconds: float | None


def outbox_backlog(*, count_published: bool = True) -> Backlog:
    """Counts by status and the age of the oldest pending event (the relay's lag).

    ``count_published=False`` counts only pending and dead events, each a range of the
    (status, created_at) index: what a page or a health check needs, without reading every
    published row (the metrics' total)."""
    if count_published:
        counts = dict(
            OutboxEvent.objects.values("status").annotate(n=Count("id")).values_list("status", "n")
        )
    else:
        counts = {
            status: OutboxEvent.objects.filter(status=status).count()
            for status in (EventStatus.PENDING, EventStatus.DEAD)
        }
    oldest = OutboxEvent.objects.filter(status=EventStatus.PENDING).aggregate(t=Min("created_at"))[
        "t"
    ]
    age = (timezone.now() - oldest).total_seconds() if oldest else None
    return Backlog(
        pending=counts.get(EventStatus.PENDING, 0),
        dead=counts.get(EventStatus.DEAD, 0),
        published=counts.get(EventStatus.PUBLISHED, 0) if count_published else None,
        oldest_pending_age_seconds=age,
    )
