"""The beat schedule names real tasks; the idempotency purge keeps 24 hours."""

import datetime

import pytest
from django.conf import settings
from django.utils import timezone

from payflow.celery import app
from payflow.models import IdempotencyRecord
from payflow.tasks import idempotency_purge


def test_every_scheduled_job_is_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, name


@pytest.mark.django_db
def test_the_idempotency_purge_deletes_only_records_past_retention():
    import uuid

    now = timezone.now()
    merchant = uuid.uuid4()
    for hours, key in ((1, "fresh"), (23, "day-old"), (49, "old"), (100, "older")):
        record = IdempotencyRecord.objects.create(
            merchant_id=merchant,
            key=key,
            method="POST",
            path="/v1/payments",
            request_hash="x",
            locked_until=now,
        )
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            created_at=now - datetime.timedelta(hours=hours)
        )
    assert idempotency_purge() == {"deleted": 2}
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["day-old", "fresh"]
    assert idempotency_purge() == {"deleted": 0}
