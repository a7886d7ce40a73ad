"""Kill tests: the archiver's process is SIGKILLed after a file write, after a verification,
in the middle of a deletion; a rerun completes the job with nothing lost and nothing
archived twice, and the log verifies (half-way too: entries or a verified segment)."""

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
from audit.models import ArchiveLease, ArchiveSegment, AuditEntry, LogLeaf
from audit.verify import verify_log
from tests.audit.test_archive import archive_dir, old_and_recent  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def archive_and_die(step: str, nth: int, now, directory: Path) -> None:
    """Run the archiver in its own process against the test database; it must die by
    SIGKILL at the ``nth`` ``step``."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"mysql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}"
        f"/{db['NAME']}",
        "AUDIT_ARCHIVE_STORAGE": "local",
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
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-3000:])


def the_dead_runs_lease_expires():
    """The killed process never released its lease: a rerun is refused until it expires."""
    assert audit_archive(now=timezone.now()).skipped
    ArchiveLease.objects.filter(name="archive").update(expires_at=timezone.now())


def live_in(segment: ArchiveSegment) -> int:
    ids = LogLeaf.objects.filter(
        index__gte=segment.first_index, index__lte=segment.last_index
    ).values_list("entry_id", flat=True)
    return AuditEntry.objects.filter(id__in=list(ids)).count()


def assert_complete(total_old: int, total_recent: int, directory: Path) -> None:
    segments = list(ArchiveSegment.objects.order_by("first_index"))
    assert all(s.status == ArchiveSegment.ARCHIVED for s in segments)
    assert sum(s.row_count for s in segments) == total_old  # nothing archived twice
    assert segments[0].first_index == 0
    assert all(b.first_index == a.last_index + 1 for a, b in itertools.pairwise(segments))
    assert segments[-1].last_index == total_old - 1
    files = sorted(str(p.relative_to(directory)) for p in (directory / "log").iterdir())
    assert files == [s.storage_path for s in segments]  # one file a segment, no leftovers
    assert AuditEntry.objects.count() == total_recent
    report = verify_log()
    assert report.ok, report.breaks[:5]
    assert report.entries == total_old + total_recent  # nothing lost


@pytest.mark.parametrize(
    ("step", "nth", "state_after_the_kill"),
    [
        ("written", 2, "pending"),  # the second segment's file is written, not yet verified
        ("verified", 3, "verified"),  # the third segment is verified, no entry deleted
        ("deleted_batch", 4, "deleting"),  # in the middle of the second segment's deletion
    ],
)
def test_killed_archiver_rerun_completes(step, nth, state_after_the_kill, archive_dir):  # noqa: F811
    now = old_and_recent(2400, 100)  # five segments: 4 x 500, then 400; batches of 200

    archive_and_die(step, nth, now, archive_dir)

    open_segment = ArchiveSegment.objects.filter(rows_deleted_at__isnull=True).get()
    done = ArchiveSegment.objects.filter(rows_deleted_at__isnull=False)
    assert all(s.last_index < open_segment.first_index for s in done)
    if state_after_the_kill == "pending":
        assert open_segment.first_index == 500
        assert open_segment.verified_at is None
        assert (archive_dir / open_segment.storage_path).exists()
        assert live_in(open_segment) == open_segment.row_count
    elif state_after_the_kill == "verified":
        assert open_segment.first_index == 1000
        assert open_segment.verified_at is not None
        assert live_in(open_segment) == open_segment.row_count
    else:
        assert open_segment.first_index == 500
        assert 0 < live_in(open_segment) < open_segment.row_count
    report = verify_log()  # even half-way, the log is whole: entries or a verified segment
    assert report.ok, report.breaks[:5]
    assert report.entries == 2500

    the_dead_runs_lease_expires()
    rerun = audit_archive(now=now)
    assert rerun.resumed == 1
    assert rerun.refused == {}
    assert_complete(2400, 100, archive_dir)


@pytest.mark.parametrize("damage", ["lost", "truncated"])
def test_a_rerun_rewrites_a_file_lost_or_torn_before_verification(damage, archive_dir):  # noqa: F811
    now = old_and_recent(1000, 0)
    archive_and_die("written", 1, now, archive_dir)
    pending = ArchiveSegment.objects.get()
    assert pending.verified_at is None
    path = archive_dir / pending.storage_path
    if damage == "lost":
        path.unlink()  # e.g. the write never reached the disk
    else:
        data = path.read_bytes()
        path.chmod(0o640)
        path.write_bytes(data[: len(data) // 2])  # a torn write
    the_dead_runs_lease_expires()
    rerun = audit_archive(now=now)
    assert (rerun.resumed, rerun.refused) == (1, {})
    assert_complete(1000, 0, archive_dir)
