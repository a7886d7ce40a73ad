"""Archiving: a prefix of the log goes to segment files (written, read back, verified), then
the live entries are deleted; verification reads segments and live entries as one log.
The clock is moved by passing ``now``, never slept."""

import base64
import datetime
import gzip
import hashlib
import json
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.utils import timezone

from audit import merkle, tlog
from audit.archive import audit_archive, segment_check
from audit.evidence import evidence_export
from audit.models import ArchiveSegment, AuditEntry, Checkpoint, LogLeaf
from audit.segments import FORMAT, build_segment, live_entries, segment_path
from audit.verify import verify_log
from payflow.platform import context, trail
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import raw, sequence, test_sequencer, triggers_dropped
from tests.ledger.conftest import pay
from tests.waiting import join_all

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.timedelta(days=1)


@pytest.fixture(autouse=True)
def archive_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    settings.AUDIT_SEGMENT_MAX_ROWS = 500
    settings.AUDIT_ARCHIVE_DELETE_BATCH = 200
    return tmp_path / "archive"


def old_and_recent(total_old, total_recent, *, objects=16):
    """``total_old`` entries 700 to 400 days old, then ``total_recent`` of the last 100 days,
    all sequenced and sealed by a signed checkpoint. Returns the moment to archive at."""
    now = timezone.now()
    seed_chain(total_old, start=now - 700 * DAY, end=now - 400 * DAY, objects=objects)
    if total_recent:
        seed_chain(total_recent, start=now - 100 * DAY, end=now - DAY, objects=objects)
    sequence()
    return now


def leaf_entries():
    """The live entries in log order: [(index, entry)]."""
    leaves = dict(LogLeaf.objects.values_list("entry_id", "index"))
    return sorted((leaves[entry.id], entry) for entry in AuditEntry.objects.all())


def test_100k_entries_archived_live_table_shrinks_and_the_log_verifies_across(settings):
    settings.AUDIT_SEGMENT_MAX_ROWS = 2000
    settings.AUDIT_ARCHIVE_DELETE_BATCH = 1000
    now = old_and_recent(90_000, 10_000)

    report = audit_archive(now=now)

    assert (report.rows, report.refused) == (90_000, {})
    assert AuditEntry.objects.count() == 10_000
    assert not AuditEntry.objects.filter(created_at__lt=now - settings.AUDIT_ARCHIVE_AFTER).exists()
    segments = list(ArchiveSegment.objects.order_by("first_index"))
    assert report.segments == len(segments) == 45
    assert sum(s.row_count for s in segments) == 90_000
    assert all(s.status == ArchiveSegment.ARCHIVED for s in segments)
    assert max(s.row_count for s in segments) <= 2000
    assert [(s.first_index, s.last_index) for s in segments] == [
        (n * 2000, n * 2000 + 1999) for n in range(45)
    ]
    assert LogLeaf.objects.count() == 100_000  # the leaves stay
    verified = verify_log()
    assert verified.ok, verified.breaks[:5]
    assert (verified.entries, verified.size, verified.checkpoint_size) == (100_000,) * 3


def test_segment_files_are_the_documented_format_with_a_recorded_digest(archive_dir):
    now = old_and_recent(40, 0, objects=4)
    before = leaf_entries()
    audit_archive(now=now)
    segment = ArchiveSegment.objects.get()
    data = (archive_dir / segment.storage_path).read_bytes()
    assert (
        segment.storage_path
        == segment_path(0, 39)
        == "log/000000000000000-000000000000039.jsonl.gz"
    )
    assert (segment.first_index, segment.last_index, segment.row_count) == (0, 39, 40)
    assert hashlib.sha256(data).hexdigest() == segment.file_digest
    assert segment.file_size == len(data)
    assert data[:2] == b"\x1f\x8b"  # gzip
    assert data[4:8] == b"\0\0\0\0"  # mtime 0
    text = gzip.decompress(data).decode()
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert lines[0] == (
        '{"count":40,"first_index":0,"format":"payflow-audit-segment/2","last_index":39}'
    )
    assert json.loads(lines[0])["format"] == FORMAT
    assert len(lines) == 41
    for line, (index, entry) in zip(lines[1:], before, strict=True):
        parsed = json.loads(line)
        assert line == json.dumps(parsed, sort_keys=True, separators=(",", ":"))
        assert parsed == {
            "body": base64.b64encode(bytes(entry.body)).decode(),
            "hash": entry.hash,
            "index": index,
            "prev_hash": entry.prev_hash,
        }
    assert segment.first_created_at == before[0][1].created_at
    assert segment.last_created_at == before[-1][1].created_at < now - 365 * DAY


def test_segment_files_alone_rebuild_the_signed_tree(archive_dir):
    """What an auditor holding only the files and the checkpoint notes can check: every
    entry's hash, its object's chain, and the tree at each signed size (stdlib only)."""
    now = timezone.now()
    seed_chain(700, start=now - 700 * DAY, end=now - 600 * DAY)
    sequence()  # signs size 700: inside the second file
    seed_chain(300, start=now - 500 * DAY, end=now - 450 * DAY)
    sequence()
    assert audit_archive(now=now).segments == 2
    assert AuditEntry.objects.count() == 0
    files = sorted((archive_dir / "log").iterdir())
    assert len(files) == 2
    leaves, tips = [], {}
    for path in files:
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        for line in lines[1:]:
            item = json.loads(line)
            body = base64.b64decode(item["body"])
            digest = hashlib.sha256(
                b"payflow-audit-entry/2\x00" + bytes.fromhex(item["prev_hash"]) + body
            ).hexdigest()
            assert digest == item["hash"]
            fields = json.loads(body)
            key = (fields["object_type"], fields["object_id"])
            assert item["prev_hash"] == tips.get(key, "0" * 64)
            tips[key] = item["hash"]
            assert item["index"] == len(leaves)
            leaves.append(bytes.fromhex(item["hash"]))
    assert len(leaves) == 1000
    verifier = tlog.Verifier(django_settings.AUDIT_PUBLIC_KEY)
    checked = []
    for checkpoint in Checkpoint.objects.order_by("size"):
        signed = tlog.verify_note(checkpoint.note, verifier)
        assert merkle.merkle_root(leaves[: signed.size]) == signed.root
        checked.append(signed.size)
    assert checked == [700, 1000]


def test_real_ledger_activity_archived_with_the_clock_moved_then_new_entries_chain_on(merchant):
    payments = [pay(merchant, amount=amount) for amount in (1000, 2000, 3000)]
    sequence()
    later = timezone.now() + 400 * DAY
    archived = audit_archive(now=later).rows
    assert archived == LogLeaf.objects.count() > 0
    assert AuditEntry.objects.count() == 0
    assert verify_log().ok  # reconciliation finds every row's latest entry in the segments

    from ledger.services.refunds import refund_create

    refund_create(payment=payments[0], amount=100)  # links to its archived entries
    pay(merchant, amount=4000)
    sequence()
    first_live = AuditEntry.objects.filter(object_id=str(payments[0].pk)).order_by("id").first()
    assert first_live.prev_hash != trail.GENESIS_HASH  # its previous entry is archived
    verified = verify_log()
    assert verified.ok, verified.breaks
    assert verified.entries == archived + AuditEntry.objects.count()
    assert verified.rows_reconciled > 0


def test_only_entries_a_signed_checkpoint_covers_are_archived():
    now = timezone.now()
    seed_chain(30, start=now - 500 * DAY, end=now - 450 * DAY)
    assert audit_archive(now=now).rows == 0  # not in the log yet
    sequencer = test_sequencer(interval=3600.0)
    assert sequencer.claim()
    sequencer.load()
    sequencer.last_checkpoint_at = time.monotonic()  # appends, does not sign yet
    assert sequencer.step().appended == 30
    sequencer.release()
    assert (LogLeaf.objects.count(), Checkpoint.objects.count()) == (30, 0)
    assert audit_archive(now=now).rows == 0  # leaves, but no checkpoint seals them
    sequence()
    seed_chain(30, start=now - 440 * DAY, end=now - 420 * DAY)
    assert audit_archive(now=now).rows == 30  # the later 30 are not sequenced yet
    sequence()
    assert audit_archive(now=now).rows == 30
    assert AuditEntry.objects.count() == 0
    assert [(s.first_index, s.last_index) for s in ArchiveSegment.objects.order_by("id")] == [
        (0, 29),
        (30, 59),
    ]


def test_archiving_stops_at_the_first_recent_entry(settings):
    now = timezone.now()
    seed_chain(100, start=now - 700 * DAY, end=now - 600 * DAY)
    seed_chain(10, start=now - 10 * DAY, end=now - DAY)
    seed_chain(100, start=now - 700 * DAY, end=now - 600 * DAY)  # old, but after recent ones
    sequence()
    report = audit_archive(now=now)
    assert (report.rows, report.segments) == (100, 1)
    assert ArchiveSegment.objects.get().last_index == 99
    assert AuditEntry.objects.count() == 110
    assert verify_log().ok


def test_a_second_run_archives_nothing_twice():
    now = old_and_recent(1200, 50)
    first, second = audit_archive(now=now), audit_archive(now=now)
    assert (first.rows, first.segments) == (1200, 3)
    assert (second.rows, second.segments, second.resumed) == (0, 0, 0)
    assert ArchiveSegment.objects.count() == first.segments
    assert AuditEntry.objects.count() == 50


def test_two_archivers_at_once_archive_each_entry_once():
    now = old_and_recent(3000, 0)
    reports = []

    def run():
        with context.replaced(context.AuditContext(**context.system_actor("task:audit.archive"))):
            reports.append(audit_archive(now=now))
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    join_all(threads, 300, "archive runs")
    assert sum(report.rows for report in reports) == 3000
    segments = list(ArchiveSegment.objects.order_by("first_index"))
    assert sum(s.row_count for s in segments) == 3000
    assert [s.first_index for s in segments] == list(range(0, 3000, 500))
    assert AuditEntry.objects.count() == 0
    assert verify_log().ok


def test_an_entry_that_does_not_match_its_hash_is_refused_not_archived(capsys):
    now = old_and_recent(100, 0)
    index, target = leaf_entries()[10]
    body = bytes(target.body).replace(b'"reason":""', b'"reason":"edited"')
    assert body != bytes(target.body)
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET body = %s WHERE id = %s", [body, target.id])
    report = audit_archive(now=now)
    assert report.rows == 0
    assert "index 10 does not match its hash" in report.refused["log"]
    assert AuditEntry.objects.count() == 100  # nothing deleted: neither before nor after it
    assert not ArchiveSegment.objects.exists()
    with pytest.raises(CommandError, match="refused"):
        call_command("audit_archive", "--as-of", now.isoformat())
    assert "refused: the entry at index 10" in capsys.readouterr().err
    assert not ArchiveSegment.objects.exists()
    assert index == 10


def test_segments_before_a_refused_entry_are_archived_and_nothing_from_its_segment():
    """The log's counterpart of a refused lane beside an archived one: the prefix before the
    bad entry's segment is archived; the bad entry's segment and everything after stay."""
    now = old_and_recent(1200, 0)
    _, target = leaf_entries()[700]
    with triggers_dropped():
        raw(
            "UPDATE audit_auditentry SET body = %s WHERE id = %s",
            [bytes(target.body).replace(b'"reason":""', b'"reason":"edited"'), target.id],
        )
    report = audit_archive(now=now)
    assert (report.rows, report.segments) == (500, 1)
    assert "index 700 does not match its hash" in report.refused["log"]
    assert [(s.first_index, s.last_index) for s in ArchiveSegment.objects.all()] == [(0, 499)]
    assert sorted(index for index, _ in leaf_entries()) == list(range(500, 1200))


def test_a_leaf_without_its_entry_is_refused():
    now = old_and_recent(50, 0)
    _, target = leaf_entries()[5]
    with triggers_dropped():
        raw("DELETE FROM audit_auditentry WHERE id = %s", [target.id])
    report = audit_archive(now=now)
    assert report.rows == 0
    assert "leaf 5 has no live entry" in report.refused["log"]
    assert AuditEntry.objects.count() == 49
    assert not ArchiveSegment.objects.exists()


def test_raw_delete_of_entries_not_covered_by_a_verified_segment_fails():
    now = old_and_recent(60, 10)
    first_id = LogLeaf.objects.get(index=0).entry_id
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="verified archive"):
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [first_id])
    # A recorded but unverified segment does not open the door either.
    built = build_segment(list(live_entries(0, 10)))
    ArchiveSegment.objects.create(
        first_index=0,
        last_index=9,
        row_count=10,
        file_digest=built.digest,
        storage_path=segment_path(0, 9),
    )
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="verified archive"):
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [first_id])
    # Entries outside a verified segment stay protected after an archive run.
    ArchiveSegment.objects.all().delete()
    assert audit_archive(now=now).rows == 60
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="verified archive"):
        cursor.execute("DELETE FROM audit_auditentry")
    assert AuditEntry.objects.count() == 10


def verify_bundle(bundle):
    """docs/audit-formats.md §5 steps 1-3, with the log's public key; the failures found."""
    signed = tlog.verify_note(bundle["checkpoint"], tlog.Verifier(django_settings.AUDIT_PUBLIC_KEY))
    assert (signed.origin, signed.size) == (bundle["origin"], bundle["tree_size"])
    failures, tips = [], {}
    complete = {tuple(key) for key in bundle.get("complete_objects", [])}
    for item in bundle["entries"]:
        body = base64.b64decode(item["body"])
        fields = json.loads(body)
        key = (fields["object_type"], fields["object_id"])
        if trail.entry_hash(item["prev_hash"], body) != item["hash"]:
            failures.append(("hash_mismatch", item["index"]))
        if trail.encode_body({k: v for k, v in fields.items() if k != "v"}) != body:
            failures.append(("not_canonical", item["index"]))
        proof = [base64.b64decode(node) for node in item["inclusion"]]
        if not merkle.verify_inclusion(
            bytes.fromhex(item["hash"]), item["index"], signed.size, proof, signed.root
        ):
            failures.append(("bad_inclusion", item["index"]))
        if key in complete and item["prev_hash"] != tips.get(key, trail.GENESIS_HASH):
            failures.append(("chain_broken", item["index"]))
        tips[key] = item["hash"]
    return failures


def test_evidence_for_live_entries_still_proves_after_the_log_prefix_was_archived():
    now = old_and_recent(80, 20, objects=1)
    audit_archive(now=now)
    assert AuditEntry.objects.count() == 20
    bundle = evidence_export(object_type="audit.seed", object_id="seed-0")
    assert [e["index"] for e in bundle["entries"]] == list(range(80, 100))
    assert bundle["entries"][0]["prev_hash"] != trail.GENESIS_HASH
    assert verify_bundle(bundle) == []  # the stored nodes of the archived prefix stay


@pytest.mark.xfail(
    strict=True,
    reason="BUG audit/evidence.py evidence_export: selects live AuditEntry rows only, so an "
    "object's archived entries are silently left out of its evidence bundle",
)
def test_evidence_for_archived_entries_is_built_from_segment_files_and_verifies():
    now = old_and_recent(80, 20, objects=1)
    audit_archive(now=now)
    bundle = evidence_export(object_type="audit.seed", object_id="seed-0")
    assert [e["index"] for e in bundle["entries"]] == list(range(100))
    assert bundle["complete_objects"] == [["audit.seed", "seed-0"]]
    assert verify_bundle(bundle) == []


def test_an_auditor_can_check_one_segment_on_demand(archive_dir):
    now = old_and_recent(30, 0)
    audit_archive(now=now)
    segment = ArchiveSegment.objects.get()
    checked = segment_check(segment.id)
    assert (checked.check_ok, checked.check_detail) == (True, "30 entries check")
    assert checked.checked_at is not None
    (archive_dir / segment.storage_path).unlink()
    checked = segment_check(segment.id)
    assert checked.check_ok is False
    assert checked.check_detail.startswith("segment_missing")
    ArchiveSegment.objects.filter(pk=segment.pk).update(verified_at=None)
    checked = segment_check(segment.id)
    assert (checked.check_ok, checked.check_detail.startswith("not verified yet")) == (None, True)
