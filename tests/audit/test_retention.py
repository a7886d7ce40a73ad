"""Retention: a prefix of the log's archived segments past AUDIT_RETENTION is purged, with a
retention record (index range, every segment's range and digest) and an entry of the log
naming it, sealed by the next checkpoint; the log verifies from the purged prefix on (the
tree's nodes stay); legal holds keep entries, and everything after them in the log."""

import datetime

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.archive import audit_archive
from audit.evidence import evidence_export
from audit.models import ArchiveSegment, AuditEntry, Checkpoint, LogLeaf, LogNode, RetentionPurge
from audit.retention import audit_retention_purge, legal_hold_place, legal_hold_release
from audit.segments import purged_before
from audit.verify import verify_log
from ledger.events import EventType
from ledger.models import Merchant
from ledger.services.merchants import merchant_set_legal_hold
from ledger.signals import insert_audited
from payflow.platform import context, db
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import raw, sequence, triggers_dropped
from tests.audit.test_archive import archive_dir, verify_bundle  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
YEAR = datetime.timedelta(days=365)
DAY = datetime.timedelta(days=1)


def eight_years_then_recent(*, merchant="seed-merchant"):
    """1000 entries 9 to 8 years old (leaves 0..999: two segments past retention), 1000 of
    3 to 2 years ago (1000..1999: two archived segments inside retention), 100 of the last
    30 days (live), sequenced, sealed and archived. Returns the moment to purge at."""
    now = timezone.now()
    seed_chain(1000, start=now - 9 * YEAR, end=now - 8 * YEAR, merchant=merchant)
    seed_chain(1000, start=now - 3 * YEAR, end=now - 2 * YEAR)
    seed_chain(100, start=now - 30 * DAY, end=now)
    sequence()
    report = audit_archive(now=now)
    assert (report.rows, report.segments, report.refused) == (2000, 4, {})
    return now


def segment_ranges(**filters):
    return [
        (s.first_index, s.last_index)
        for s in ArchiveSegment.objects.filter(**filters).order_by("first_index")
    ]


def stringified(detail):
    return [{key: str(value) for key, value in segment.items()} for segment in detail]


def purge_entry(purge):
    return AuditEntry.objects.get(
        event_type="audit.retention_purged",
        object_type="audit.retentionpurge",
        object_id=str(purge.id),
    )


def test_segments_past_retention_are_purged_with_a_record_in_the_log_and_the_log_still_verifies(
    settings,
    archive_dir,  # noqa: F811
):
    now = eight_years_then_recent()
    old = list(
        ArchiveSegment.objects.filter(last_created_at__lt=now - settings.AUDIT_RETENTION).order_by(
            "first_index"
        )
    )
    assert [(s.first_index, s.last_index, s.row_count) for s in old] == [
        (0, 499, 500),
        (500, 999, 500),
    ]
    nodes_before = LogNode.objects.count()

    report = audit_retention_purge(now=now)

    assert (report.segments, report.rows, report.problems, report.held) == (2, 1000, [], [])
    assert report.files_removed == 2
    record = RetentionPurge.objects.get()
    assert report.purge_id == record.id
    assert (record.first_index, record.last_index) == (0, 999)
    assert (record.segment_count, record.row_count) == (2, 1000)
    assert record.detail == [
        {
            "first_index": s.first_index,
            "last_index": s.last_index,
            "row_count": s.row_count,
            "file_digest": s.file_digest,
            "storage_path": s.storage_path,
        }
        for s in old
    ]
    for segment in old:
        segment.refresh_from_db()
        assert segment.status == ArchiveSegment.PURGED
        assert segment.purge_id == record.id
        assert segment.file_removed_at
        assert not (archive_dir / segment.storage_path).exists()
    assert segment_ranges(purged_at__isnull=True) == [(1000, 1499), (1500, 1999)]
    assert purged_before() == 1000

    # The purge is an entry of the log itself, saying what was removed.
    entry = purge_entry(record)
    new = entry.fields["new"]
    # (The canonical encoding writes numbers as strings, docs/audit-formats.md §1.1.)
    assert (new["first_index"], new["last_index"], new["rows"]) == ("0", "999", "1000")
    assert new["segments"] == stringified(record.detail)
    assert new["retention_seconds"] == str(int(settings.AUDIT_RETENTION.total_seconds()))
    assert entry.fields["action"] == "purge"
    assert entry.actor_id == context.current().actor_id
    # The leaves and the tree's nodes stay: later entries still prove.
    assert LogLeaf.objects.count() == 2100
    assert LogNode.objects.count() == nodes_before

    sequence()  # seals the purge's entry: leaf 2100
    assert LogLeaf.objects.get(entry_id=entry.id).index == 2100
    assert Checkpoint.objects.order_by("-size").first().size == 2101
    verified = verify_log()
    assert verified.ok, verified.breaks[:5]
    # What is left (from the purged prefix on), and the purge's own entry.
    assert (verified.entries, verified.size, verified.checkpoint_size) == (1101, 2101, 2101)
    assert audit_retention_purge(now=now).segments == 0  # idempotent
    assert RetentionPurge.objects.count() == 1


def test_the_purge_entry_proves_against_a_signed_checkpoint(archive_dir):  # noqa: F811
    """What the old signed retention record gave an auditor: the record's content under
    the log's signature (an inclusion proof of its entry in a signed checkpoint)."""
    now = eight_years_then_recent()
    record = RetentionPurge.objects.get(pk=audit_retention_purge(now=now).purge_id)
    sequence()
    bundle = evidence_export(object_type="audit.retentionpurge", object_id=str(record.id))
    assert len(bundle["entries"]) == 1
    assert bundle["entries"][0]["index"] == 2100
    assert bundle["entries"][0]["entry"]["new"]["segments"] == stringified(record.detail)
    assert verify_bundle(bundle) == []


def test_a_purge_entry_edited_in_the_log_is_reported(archive_dir):  # noqa: F811
    """As a DBA: the purge's entry edited to claim a smaller removal (the signed record of
    the lane design was forged the same way)."""
    now = eight_years_then_recent()
    record = RetentionPurge.objects.get(pk=audit_retention_purge(now=now).purge_id)
    sequence()
    entry = purge_entry(record)
    body = bytes(entry.body).replace(b'"rows":"1000"', b'"rows":"500"')
    assert body != bytes(entry.body)
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET body = %s WHERE id = %s", [body, entry.id])
    report = verify_log()
    assert not report.ok
    found = [b for b in report.breaks if b.kind == "hash_mismatch"]
    assert [(b.object_type, b.object_id, b.index) for b in found] == [
        ("audit.retentionpurge", str(record.id), 2100)
    ]


def test_a_forged_retention_record_is_reported(archive_dir):  # noqa: F811
    now = eight_years_then_recent()
    record = RetentionPurge.objects.get(pk=audit_retention_purge(now=now).purge_id)
    sequence()
    hidden = ArchiveSegment.objects.get(first_index=1000)
    # As a DBA would: the record's triggers (audit 0008) refuse the UPDATE otherwise.
    with triggers_dropped():
        raw(
            "UPDATE audit_retentionpurge SET last_index = %s, segment_count = 3, "
            "row_count = 1500 WHERE id = %s",
            [hidden.last_index, record.id],
        )
    ArchiveSegment.objects.filter(pk=hidden.pk).update(purged_at=now, purge=record)
    report = verify_log()
    assert not report.ok  # the log's purge entry says 0..999


def test_segments_marked_purged_without_a_retention_record_leave_a_gap(archive_dir):  # noqa: F811
    """Regression (audit/segments.py ``purged_before``): the purged prefix came from the
    segments' ``purged_at``, a flag the archiver's database user may set, so marking the
    oldest segment purged hid its entries from verification without any record."""
    now = eight_years_then_recent()
    first = ArchiveSegment.objects.order_by("first_index").first()
    ArchiveSegment.objects.filter(pk=first.pk).update(purged_at=now)  # hiding the oldest
    assert purged_before() == 0
    report = verify_log()
    assert not report.ok
    assert report.breaks[0].kind == "entry_missing"
    assert report.breaks[0].index == 0
    missing = {b.index for b in report.breaks if b.kind == "entry_missing"}
    assert missing <= set(range(first.first_index, first.last_index + 1))


@db.atomic
def held_merchant(pk):
    """A merchant whose id the seeded entries name (created through the services' own
    insert, with its entry, like ``merchant_create``)."""
    return insert_audited(
        Merchant(id=pk, name="Under Investigation", default_currency="EUR"),
        event_type=EventType.MERCHANT_CREATED,
    )


def test_a_merchant_on_legal_hold_keeps_its_segment_and_everything_after_it_in_the_log(
    archive_dir,  # noqa: F811
):
    from ledger.models.merchants import uuid7

    held_id = str(uuid7())
    now = timezone.now()
    # Three segments past retention: the middle one holds the merchant's entries.
    seed_chain(500, start=now - 9 * YEAR, end=now - 9 * YEAR + 30 * DAY)
    seed_chain(
        500, start=now - 9 * YEAR + 40 * DAY, end=now - 9 * YEAR + 70 * DAY, merchant=held_id
    )
    seed_chain(500, start=now - 9 * YEAR + 80 * DAY, end=now - 8 * YEAR)
    sequence()
    assert audit_archive(now=now).segments == 3
    merchant = held_merchant(held_id)
    with context.bind(reason="court order 42"):
        merchant_set_legal_hold(merchant=merchant, legal_hold=True)

    report = audit_retention_purge(now=now)

    assert (report.segments, report.rows, report.held) == (1, 500, ["log 500..999"])
    # The purged part is a prefix: the third segment, past retention and not held, stays.
    assert segment_ranges(purged_at__isnull=False) == [(0, 499)]
    assert segment_ranges(purged_at__isnull=True) == [(500, 999), (1000, 1499)]
    assert purged_before() == 500
    placed = AuditEntry.objects.get(event_type="merchant.legal_hold_placed")
    assert placed.fields["reason"] == "court order 42"
    assert placed.object_id == held_id

    merchant_set_legal_hold(merchant=merchant, legal_hold=False)
    released = audit_retention_purge(now=now)
    assert (released.segments, released.held) == (2, [])
    assert purged_before() == 1500
    ranges = RetentionPurge.objects.order_by("id").values_list("first_index", "last_index")
    assert list(ranges) == [(0, 499), (500, 1499)]
    sequence()
    verified = verify_log()
    assert verified.ok, verified.breaks[:5]


def test_a_legal_hold_on_one_object_keeps_its_segment(archive_dir):  # noqa: F811
    now = timezone.now()
    seed_chain(500, start=now - 9 * YEAR, end=now - 9 * YEAR + 30 * DAY)
    # Objects of another type, only in the second segment (leaves 500..999).
    seed_chain(
        500,
        start=now - 9 * YEAR + 40 * DAY,
        end=now - 8 * YEAR,
        object_type="audit.disputed",
    )
    seed_chain(100, start=now - 30 * DAY, end=now)
    sequence()
    assert audit_archive(now=now).segments == 2
    hold = legal_hold_place(
        object_type="audit.disputed", object_id="seed-7", reason="dispute", placed_by="legal"
    )
    report = audit_retention_purge(now=now)
    assert (report.segments, report.held) == (1, ["log 500..999"])  # 0..499 purged
    assert purged_before() == 500
    legal_hold_release(hold_id=hold.id, released_by="legal")
    assert audit_retention_purge(now=now).segments == 1
    assert purged_before() == 1000
    events = set(AuditEntry.objects.values_list("event_type", flat=True))
    assert {"audit.legal_hold_placed", "audit.legal_hold_released"} <= events
    sequence()
    verified = verify_log()
    assert verified.ok, verified.breaks[:5]


def test_a_segment_whose_file_does_not_check_stops_the_purge_and_is_reported(
    archive_dir,  # noqa: F811
):
    now = eight_years_then_recent()
    second = ArchiveSegment.objects.get(first_index=500)
    path = archive_dir / second.storage_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o640)
    path.write_bytes(bytes(data))
    report = audit_retention_purge(now=now)
    assert (report.segments, report.rows) == (1, 500)  # 0..499; never the altered file
    assert len(report.problems) == 1
    assert "segment_altered" in report.problems[0]
    assert str(second) in report.problems[0]
    assert segment_ranges(purged_at__isnull=False) == [(0, 499)]
    assert path.exists()  # the evidence of the tampering stays


def test_the_commands(archive_dir, capsys):  # noqa: F811
    now = eight_years_then_recent()
    call_command(
        "audit_legal_hold",
        "place",
        "--object",
        "audit.seed",
        "seed-6",
        "--reason",
        "subpoena",
        "--by",
        "counsel",
    )
    call_command("audit_legal_hold", "list")
    assert "seed-6" in capsys.readouterr().out
    call_command("audit_retention_purge", "--as-of", now.isoformat())
    out = capsys.readouterr().out
    assert "purged 0 segments" in out
    assert "kept (legal hold): log 0..499" in out
    assert not RetentionPurge.objects.exists()
