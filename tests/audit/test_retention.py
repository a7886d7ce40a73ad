"""Retention: segments past AUDIT_RETENTION are purged with a signed record and an audit
row; the chain verifies from the retention boundary; legal holds keep rows."""

import datetime

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.archive import audit_archive
from audit.checkpoints import audit_checkpoint_create
from audit.models import ArchiveSegment, AuditEntry, RetentionPurge
from audit.retention import (
    DOMAIN,
    audit_retention_purge,
    legal_hold_place,
    legal_hold_release,
    retention_boundaries,
)
from audit.signing import public_key_from_seed, verify_statement
from audit.verify import verify_all
from ledger.services.merchants import merchant_create, merchant_set_legal_hold
from payflow.platform import context
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import signed_record_triggers_dropped
from tests.audit.test_archive import archive_dir  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
YEAR = datetime.timedelta(days=365)


def eight_years_then_recent(lanes=(0, 1), merchant="seed-merchant"):
    now = timezone.now()
    seed_chain(1000, start=now - 9 * YEAR, end=now - 8 * YEAR, lanes=list(lanes), merchant=merchant)
    seed_chain(1000, start=now - 3 * YEAR, end=now - 2 * YEAR, lanes=list(lanes))
    seed_chain(100, start=now - 30 * datetime.timedelta(days=1), end=now, lanes=list(lanes))
    audit_checkpoint_create()
    audit_archive(now=now)
    return now


def test_segments_past_retention_are_purged_with_a_signed_record_and_the_chain_still_verifies(
    settings,
    archive_dir,  # noqa: F811
):
    now = eight_years_then_recent()
    old = list(ArchiveSegment.objects.filter(last_created_at__lt=now - settings.AUDIT_RETENTION))
    assert len(old) == 2
    assert all(s.row_count == 500 for s in old)

    report = audit_retention_purge(now=now)

    assert (report.segments, report.rows, report.problems) == (2, 1000, [])
    record = RetentionPurge.objects.get()
    body = record.signed["body"]
    assert verify_statement(DOMAIN, record.signed, public_key_from_seed(settings.AUDIT_SIGNING_KEY))
    assert {(lane["lane"], lane["seq"]) for lane in body["lanes"]} == {(0, 500), (1, 500)}
    assert sorted(s["file_digest"] for s in body["segments"]) == sorted(s.file_digest for s in old)
    for segment in old:
        segment.refresh_from_db()
        assert segment.status == ArchiveSegment.PURGED
        assert segment.file_removed_at
        assert not (archive_dir / segment.storage_path).exists()
    purge_row = AuditEntry.objects.get(event_type="audit.retention_purged")
    assert purge_row.object_id == str(record.id)
    assert purge_row.new_values["rows"] == 1000
    assert purge_row.actor_id == "tests"

    verified = verify_all()
    assert verified.ok, verified.breaks
    assert verified.rows == 2100 - 1000 + 1  # what is left, and the purge's own audit row
    assert audit_retention_purge(now=now).segments == 0  # idempotent


def test_a_forged_retention_record_is_reported(archive_dir):  # noqa: F811
    now = eight_years_then_recent()
    audit_retention_purge(now=now)
    record = RetentionPurge.objects.get()
    signed = dict(record.signed, body=dict(record.signed["body"], lanes=[]))
    # As a DBA would: the record's own triggers (audit 0007) refuse the UPDATE otherwise.
    with signed_record_triggers_dropped():
        RetentionPurge.objects.filter(pk=record.pk).update(signed=signed)
    report = verify_all(lanes=[0])
    assert report.breaks[0].break_kind == "retention_record_invalid"


def test_segments_marked_purged_without_a_signed_record_leave_a_gap(archive_dir):  # noqa: F811
    now = eight_years_then_recent(lanes=(2,))
    first = ArchiveSegment.objects.filter(lane=2).order_by("first_seq").first()
    ArchiveSegment.objects.filter(pk=first.pk).update(purged_at=now)  # hiding the oldest rows
    found = verify_all(lanes=[2]).breaks[0]
    assert (found.break_kind, found.break_seq) == ("row_missing", 1)


def test_a_merchant_on_legal_hold_keeps_its_rows_and_everything_after_them_in_the_lane(
    archive_dir,  # noqa: F811
):
    merchant = merchant_create(name="Under Investigation")
    held_id = str(merchant.pk)
    # The merchant's own creation row is recent and heads its lane, so nothing seeded after it
    # in that lane could be archived: seed two lanes other than the merchant's.
    own_lane = AuditEntry.objects.get(object_type="ledger.merchant", object_id=held_id).lane
    lanes = tuple(lane for lane in range(3, 6) if lane != own_lane)[:2]
    now = eight_years_then_recent(lanes=lanes, merchant=held_id)
    with context.bind(reason="court order 42"):
        merchant_set_legal_hold(merchant=merchant, legal_hold=True)
    report = audit_retention_purge(now=now)
    assert report.segments == 0
    assert len(report.held) == 2
    placed = AuditEntry.objects.get(event_type="merchant.legal_hold_placed")
    assert placed.reason == "court order 42"
    merchant_set_legal_hold(merchant=merchant, legal_hold=False)
    assert audit_retention_purge(now=now).segments == 2
    assert verify_all().ok


def test_a_legal_hold_on_one_object_keeps_its_segment(archive_dir):  # noqa: F811
    now = eight_years_then_recent(lanes=(5,))
    hold = legal_hold_place(
        object_type="ledger.transaction",
        object_id="seed-5-700",
        reason="dispute",
        placed_by="legal",
    )
    report = audit_retention_purge(now=now)
    assert report.segments == 1  # seq 1..500 purged; 501..1000 holds seq 700 and stays
    assert retention_boundaries()[5][0] == 500
    legal_hold_release(hold_id=hold.id, released_by="legal")
    assert audit_retention_purge(now=now).segments == 1
    events = set(AuditEntry.objects.values_list("event_type", flat=True))
    assert {"audit.legal_hold_placed", "audit.legal_hold_released"} <= events
    assert verify_all().ok


def test_the_commands(archive_dir, capsys):  # noqa: F811
    now = eight_years_then_recent(lanes=(6,))
    call_command(
        "audit_legal_hold",
        "place",
        "--object",
        "ledger.transaction",
        "seed-6-10",
        "--reason",
        "subpoena",
        "--by",
        "counsel",
    )
    call_command("audit_legal_hold", "list")
    assert "seed-6-10" in capsys.readouterr().out
    call_command("audit_retention_purge", "--as-of", now.isoformat())
    out = capsys.readouterr().out
    assert "purged 0 segments" in out
    assert "kept (legal hold)" in out
