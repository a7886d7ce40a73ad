"""Archiving: segments written, read back, verified, then live rows deleted; one chain per
lane across segments and live rows. The clock is moved by passing ``now``, never slept."""

import datetime
import gzip
import hashlib
import json
import threading
from pathlib import Path

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from audit.archive import audit_archive, segment_check
from audit.checkpoints import audit_checkpoint_create
from audit.evidence import evidence_export
from audit.models import ArchiveSegment, AuditEntry
from audit.segments import FORMAT, build_segment, segment_path
from audit.verify import verify_all
from payflow.platform import context
from tests.audit.chainseed import seed_chain
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


def old_and_recent(total_old, total_recent, lanes=None):
    now = timezone.now()
    seed_chain(total_old, start=now - 700 * DAY, end=now - 400 * DAY, lanes=lanes)
    seed_chain(total_recent, start=now - 100 * DAY, end=now - DAY, lanes=lanes)
    audit_checkpoint_create()
    return now


def test_100k_rows_archived_live_table_shrinks_and_the_chain_verifies_across(settings):
    settings.AUDIT_SEGMENT_MAX_ROWS = 2000
    settings.AUDIT_ARCHIVE_DELETE_BATCH = 1000
    now = old_and_recent(90_000, 10_000)

    report = audit_archive(now=now)

    assert (report.rows, report.refused) == (90_000, {})
    assert AuditEntry.objects.count() == 10_000
    assert not AuditEntry.objects.filter(created_at__lt=now - settings.AUDIT_ARCHIVE_AFTER).exists()
    segments = ArchiveSegment.objects.all()
    assert sum(s.row_count for s in segments) == 90_000
    assert all(s.status == ArchiveSegment.ARCHIVED for s in segments)
    assert max(s.row_count for s in segments) <= 2000
    verified = verify_all()
    assert verified.ok, verified.breaks
    assert verified.rows == 100_000


def test_segment_files_are_canonical_json_lines_with_a_recorded_digest(archive_dir):
    now = old_and_recent(40, 0, lanes=[3])
    audit_archive(now=now)
    segment = ArchiveSegment.objects.get()
    data = (archive_dir / segment.storage_path).read_bytes()
    assert (
        segment.storage_path
        == segment_path(3, 1, 40)
        == "lane-003/000000000001-000000000040.jsonl.gz"
    )
    assert hashlib.sha256(data).hexdigest() == segment.file_digest
    lines = gzip.decompress(data).decode().splitlines()
    header = json.loads(lines[0])
    assert header == {
        "format": FORMAT,
        "lane": 3,
        "first_seq": 1,
        "last_seq": 40,
        "first_prev_hash": "0" * 64,
        "last_hash": segment.last_hash,
        "row_count": 40,
    }
    first = json.loads(lines[1])
    assert json.loads(first["canonical"])["seq"] == "1"
    assert segment.first_created_at < segment.last_created_at < now - 365 * DAY


def test_real_ledger_activity_archived_with_the_clock_moved_then_new_rows_chain_on(merchant):
    for amount in (1000, 2000, 3000):
        pay(merchant, amount=amount)
    audit_checkpoint_create()
    later = timezone.now() + 400 * DAY
    archived = audit_archive(now=later).rows
    assert archived > 0
    assert AuditEntry.objects.count() == 0

    pay(merchant, amount=4000)  # new rows link to the archived heads
    audit_checkpoint_create()
    verified = verify_all()
    assert verified.ok, verified.breaks
    assert verified.rows == archived + AuditEntry.objects.count()


def test_only_rows_a_signed_checkpoint_covers_are_archived():
    now = timezone.now()
    seed_chain(30, start=now - 500 * DAY, end=now - 450 * DAY, lanes=[1])
    assert audit_archive(now=now).rows == 0  # no checkpoint yet
    audit_checkpoint_create()
    seed_chain(30, start=now - 440 * DAY, end=now - 420 * DAY, lanes=[1])
    assert audit_archive(now=now).rows == 30
    audit_checkpoint_create()
    assert audit_archive(now=now).rows == 30
    assert AuditEntry.objects.count() == 0


def test_a_second_run_archives_nothing_twice():
    now = old_and_recent(1200, 50)
    first, second = audit_archive(now=now), audit_archive(now=now)
    assert first.rows == 1200
    assert (second.rows, second.segments) == (0, 0)
    assert ArchiveSegment.objects.count() == first.segments


def test_two_archivers_at_once_archive_each_row_once():
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
    assert sum(s.row_count for s in ArchiveSegment.objects.all()) == 3000
    assert verify_all().ok


def test_a_lane_whose_rows_do_not_chain_is_refused_not_archived(monkeypatch):
    from tests.audit.conftest import raw, triggers_dropped

    now = old_and_recent(100, 0, lanes=[2, 5])
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET reason = 'edited' WHERE lane = 2 AND seq = 10")
    report = audit_archive(now=now)
    assert 2 in report.refused
    assert "seq 10" in report.refused[2]
    assert AuditEntry.objects.filter(lane=2).count() == 50  # nothing of lane 2 deleted
    assert not ArchiveSegment.objects.filter(lane=2).exists()
    assert AuditEntry.objects.filter(lane=5).count() == 0


def test_raw_delete_of_rows_not_covered_by_a_verified_segment_fails():
    now = old_and_recent(60, 10, lanes=[4])
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="verified archive"):
        cursor.execute("DELETE FROM audit_auditentry WHERE lane = 4 AND seq = 1")
    # A recorded but unverified segment does not open the door either.
    from audit.segments import live_rows

    built = build_segment(4, list(live_rows(4, 0, 10)))
    ArchiveSegment.objects.create(
        lane=4,
        first_seq=1,
        last_seq=10,
        first_prev_hash=built.first_prev_hash,
        last_hash=built.last_hash,
        row_count=10,
        file_digest=built.digest,
        storage_path=segment_path(4, 1, 10),
    )
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="verified archive"):
        cursor.execute("DELETE FROM audit_auditentry WHERE lane = 4 AND seq = 1")
    # Rows outside an archived, verified range stay protected after an archive run.
    ArchiveSegment.objects.all().delete()
    audit_archive(now=now)
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="verified archive"):
        cursor.execute("DELETE FROM audit_auditentry WHERE lane = 4")
    assert AuditEntry.objects.filter(lane=4).count() == 10


def test_evidence_for_archived_rows_is_built_from_segment_files_and_verifies_offline(tmp_path):
    from audit import signing
    from tests.audit.test_offline_verifier import run_verifier

    now = old_and_recent(80, 20, lanes=[6])
    audit_archive(now=now)
    assert AuditEntry.objects.filter(lane=6).count() == 20
    bundle = evidence_export(lane=6, first_seq=70, last_seq=100)  # archived and live
    assert [e["seq"] for e in bundle["entries"]] == list(range(70, 101))
    from django.conf import settings

    key = signing.public_key_from_seed(settings.AUDIT_SIGNING_KEY).hex()
    result = run_verifier(tmp_path, bundle, key)
    assert result.returncode == 0, result.stderr


def test_an_auditor_can_check_one_segment_on_demand(archive_dir):
    now = old_and_recent(30, 0, lanes=[7])
    audit_archive(now=now)
    segment = ArchiveSegment.objects.get()
    checked = segment_check(segment.id)
    assert (checked.check_ok, checked.check_detail) == (True, "30 rows check")
    (archive_dir / segment.storage_path).unlink()
    checked = segment_check(segment.id)
    assert checked.check_ok is False
    assert checked.check_detail.startswith("segment_missing")


def test_the_offline_verifier_checks_segment_files_against_signed_checkpoints(
    archive_dir, tmp_path
):
    import subprocess
    import sys

    from django.conf import settings

    from audit import signing
    from audit.models import AuditCheckpoint
    from tests.audit.test_offline_verifier import VERIFIER

    now = timezone.now()
    seed_chain(700, start=now - 700 * DAY, end=now - 600 * DAY, lanes=[2])
    audit_checkpoint_create()  # its head (seq 700) falls inside the second file
    seed_chain(300, start=now - 500 * DAY, end=now - 450 * DAY, lanes=[2])
    audit_checkpoint_create()
    audit_archive(now=now)
    files = sorted(str(p) for p in (archive_dir / "lane-002").iterdir())
    assert len(files) == 2
    checkpoints = []
    for checkpoint in AuditCheckpoint.objects.order_by("number"):
        path = tmp_path / f"checkpoint-{checkpoint.number}.json"
        path.write_text(json.dumps(checkpoint.signed))
        checkpoints += ["--checkpoint", str(path)]
    key = signing.public_key_from_seed(settings.AUDIT_SIGNING_KEY).hex()

    def offline(*paths):
        return subprocess.run(
            [
                sys.executable,
                "-I",
                str(VERIFIER),
                "--segments",
                *paths,
                "--public-key",
                key,
                *checkpoints,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )

    result = offline(*files)
    assert result.returncode == 0, result.stderr
    assert "lane 2: seq 1..1000 in 2 file(s)" in result.stdout
    assert "2 entr(ies) match a signed checkpoint head" in result.stdout
    assert offline(files[1]).returncode == 1  # the lane's start is missing
    data = bytearray(Path(files[1]).read_bytes())
    data[-12] ^= 0x01
    Path(files[1]).chmod(0o640)
    Path(files[1]).write_bytes(bytes(data))
    rejected = offline(*files)
    assert rejected.returncode == 1
    assert "not a readable segment file" in rejected.stderr
