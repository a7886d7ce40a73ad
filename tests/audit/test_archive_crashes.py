"""Kill tests: the archiver's process is SIGKILLed after the file write, after the
verification, in the middle of the deletion; a rerun completes the job with nothing lost
and nothing archived twice, and the chain verifies."""

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from audit.archive import audit_archive
from audit.models import ArchiveLease, ArchiveSegment, AuditEntry
from audit.verify import verify_all
from tests.audit.test_archive import archive_dir, old_and_recent  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def archive_and_die(step: str, nth: int, now, directory: Path) -> None:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"mysql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}"
        f"/{db['NAME']}",
        "AUDIT_ARCHIVE_DIR": str(directory),
        "AUDIT_SEGMENT_MAX_ROWS": str(django_settings.AUDIT_SEGMENT_MAX_ROWS),
        "AUDIT_ARCHIVE_DELETE_BATCH": str(django_settings.AUDIT_ARCHIVE_DELETE_BATCH),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.audit.archive_killer", step, str(nth), now.isoformat()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


def the_dead_runs_lease_expires():
    """The killed process never released its lease: a rerun is refused until it expires."""
    assert audit_archive(now=timezone.now()).skipped
    ArchiveLease.objects.filter(name="archive").update(expires_at=timezone.now())


def assert_complete(total_old: int, total_recent: int) -> None:
    segments = list(ArchiveSegment.objects.order_by("lane", "first_seq"))
    assert all(s.status == ArchiveSegment.ARCHIVED for s in segments)
    assert sum(s.row_count for s in segments) == total_old  # nothing archived twice
    for lane in {s.lane for s in segments}:
        ranges = [(s.first_seq, s.last_seq) for s in segments if s.lane == lane]
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert AuditEntry.objects.count() == total_recent
    report = verify_all()
    assert report.ok, report.breaks
    assert report.rows == total_old + total_recent  # nothing lost


@pytest.mark.parametrize(
    ("step", "nth", "state_after_the_kill"),
    [
        ("written", 2, "pending"),  # the second segment's file is written, not yet verified
        ("verified", 3, "verified"),  # the third segment is verified, no row deleted
        ("deleted_batch", 4, "deleting"),  # in the middle of a segment's deletion
    ],
)
def test_killed_archiver_rerun_completes(step, nth, state_after_the_kill, archive_dir):  # noqa: F811
    now = old_and_recent(2400, 100, lanes=[0, 1])  # 1200 old rows a lane: 3 segments each

    archive_and_die(step, nth, now, archive_dir)

    open_segment = ArchiveSegment.objects.filter(rows_deleted_at__isnull=True).get()
    if state_after_the_kill == "pending":
        assert open_segment.verified_at is None
        assert (archive_dir / open_segment.storage_path).exists()
    elif state_after_the_kill == "verified":
        assert open_segment.verified_at is not None
        assert (
            AuditEntry.objects.filter(
                lane=open_segment.lane, seq__range=(open_segment.first_seq, open_segment.last_seq)
            ).count()
            == open_segment.row_count
        )
    else:
        left = AuditEntry.objects.filter(
            lane=open_segment.lane, seq__range=(open_segment.first_seq, open_segment.last_seq)
        ).count()
        assert 0 < left < open_segment.row_count
    assert verify_all().ok  # even half-way, the chain is whole: rows or a verified segment

    the_dead_runs_lease_expires()
    rerun = audit_archive(now=now)
    assert rerun.resumed == 1
    assert_complete(2400, 100)


def test_a_rerun_rewrites_a_file_lost_before_verification(archive_dir):  # noqa: F811
    now = old_and_recent(1000, 0, lanes=[3])
    archive_and_die("written", 1, now, archive_dir)
    pending = ArchiveSegment.objects.get()
    (archive_dir / pending.storage_path).unlink()  # e.g. the write never reached the disk
    the_dead_runs_lease_expires()
    audit_archive(now=now)
    assert_complete(1000, 0)
