"""Operators' tools: backlog, requeue of a dead event, purge of published ones."""

import datetime
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditEntry
from outbox.models import OutboxEvent
from outbox.services import NotDead, outbox_backlog, outbox_purge, outbox_requeue
from payflow.platform import context
from tests.ledger.conftest import pay


def test_the_backlog_counts_by_status_and_reports_the_oldest_pending_age(merchant):
    pay(merchant)
    backlog = outbox_backlog()
    # 3 payment events (audit entries reach Kafka through the sequencer, not the outbox)
    assert AuditEntry.objects.exists()
    assert backlog.pending == 3
    assert (backlog.dead, backlog.published) == (0, 0)
    assert 0 <= backlog.oldest_pending_age_seconds < 60


PAN = "4111111111111111"


def test_a_dead_event_can_be_requeued_once_and_only_a_dead_one(merchant, capsys):
    pay(merchant)
    event = OutboxEvent.objects.filter(aggregate_type="payment").order_by("id").first()
    with pytest.raises(NotDead):
        outbox_requeue(event_id=event.pk)
    OutboxEvent.objects.filter(pk=event.pk).update(status="dead", attempts=10, last_error="x")
    call_command("outbox_status")
    assert f"dead {event.pk}" in capsys.readouterr().out
    with pytest.raises(CommandError, match="an audited operator action: run"):
        call_command("outbox_status", "--requeue", str(event.pk))  # no longer unaudited
    with context.replaced(context.AuditContext()):  # as from a shell: nobody is bound
        call_command("outbox_requeue", str(event.pk), "--reason", "schema fixed", "--by", "ops")
    event.refresh_from_db()
    assert (event.status, event.attempts, event.next_attempt_at) == ("pending", 0, None)
    action = AuditEntry.objects.get(event_type="operator.outbox_requeue")
    assert (action.actor_type, action.actor_id) == ("system", "command:ops")
    assert action.revealed["reason"] == "schema fixed"
    with pytest.raises(CommandError, match="is not dead"):
        call_command("outbox_requeue", str(event.pk), "--reason", "again", "--by", "ops")
    for wrong, says in ((PAN, "must be an outbox event's id"), (str(uuid.uuid4()), "no outbox")):
        with pytest.raises(CommandError, match=says) as refused:
            call_command("outbox_requeue", wrong, "--reason", "x", "--by", "ops")
        assert PAN not in str(refused.value)
    with pytest.raises(CommandError, match="--by must name"):
        call_command("outbox_requeue", str(event.pk), "--reason", "x", "--by", " ")


def test_the_purge_removes_only_published_events_past_retention(merchant):
    pay(merchant)
    OutboxEvent.objects.filter(aggregate_type__startswith="audit").delete()
    first, second, third = OutboxEvent.objects.order_by("id")
    old = timezone.now() - datetime.timedelta(hours=100)
    OutboxEvent.objects.filter(pk=first.pk).update(status="published", published_at=old)
    OutboxEvent.objects.filter(pk=second.pk).update(status="published", published_at=timezone.now())
    OutboxEvent.objects.filter(pk=third.pk).update(status="dead")
    assert outbox_purge(older_than_hours=72, batch_size=1) == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {second.pk, third.pk}
    assert outbox_purge(older_than_hours=72) == 0
