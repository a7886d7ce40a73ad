"""The archiver: log entries older than ``AUDIT_ARCHIVE_AFTER`` move to segment files.

A prefix of the log, in index order, is archived one segment at a time (contiguous leaf
ranges, ``docs/audit-formats.md`` §7):

1. **record** — the next leaves (entries older than the cutoff, and covered by a signed
   checkpoint, so every archived entry is sealed) are read, each entry checked against its
   hash; the segment row is inserted (``verified_at`` NULL) with the digest of the file
   they make. One short transaction.
2. **write** — the file goes to the archive storage (outside any transaction: object
   storage is a network call). The file is deterministic, so a rerun rebuilds the same bytes.
3. **verify** — the file is read back: digest, header, range, every entry hash, and every
   hash against the live entry it copies. Only then is the segment marked verified.
4. **delete** — the live entries go in small transactions (``AUDIT_ARCHIVE_DELETE_BATCH``),
   which Galera replicates as small write sets. The DELETE trigger admits only entries
   whose leaf a verified segment covers. Then ``rows_deleted_at`` is set. The leaves and
   the tree's nodes stay: proofs of every entry still verify.

A crash anywhere leaves the entries or a verified segment (never neither). A rerun first
finishes the open segment, then goes on; the unique ``first_index`` and the lease keep
anything from being archived twice. In production the task runs on a worker that connects
as the archiver database user (``manage.py audit_grants``, ``AUDIT_ARCHIVER_QUEUE``).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.leases import lease_claim, leased
from audit.models import ArchiveSegment, AuditEntry, Checkpoint, LogLeaf
from audit.report import LogEntry
from audit.segments import (
    SegmentProblem,
    build_segment,
    check_segment,
    live_entries,
    read_segment,
    segment_path,
    write_segment_file,
)
from payflow.platform import db, trail

logger = logging.getLogger(__name__)


class ArchiveRefused(RuntimeError):
    """The archiver will not archive these rows (their chain does not hold, or the file
    does not match them); they stay live and the problem is reported."""


def _step(name: str) -> None:
    """A named point between the archiver's steps (the kill tests stop the process here)."""


# --- the archiver -----------------------------------------------------------------------


@dataclass
class ArchiveReport:
    segments: int = 0
    rows: int = 0
    resumed: int = 0
    skipped: str = ""
    refused: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "segments": self.segments,
            "rows": self.rows,
            "resumed": self.resumed,
            "skipped": self.skipped,
            "refused": dict(self.refused),
        }


def audit_archive(*, now: datetime.datetime | None = None) -> ArchiveReport:
    """Archive the log's entries older than ``AUDIT_ARCHIVE_AFTER`` (before ``now``).

    Idempotent and safe to run twice at once (the second run finds the lease taken and
    returns ``skipped``). Entries that do not check are refused and reported, not archived.
    """
    now = now or timezone.now()
    report = ArchiveReport()
    with leased("archive") as owner:
        if owner is None:
            report.skipped = "another archiver holds the lease"
            return report
        cutoff = now - settings.AUDIT_ARCHIVE_AFTER
        sealed = Checkpoint.objects.order_by("-size").values_list("size", flat=True).first() or 0
        last = ArchiveSegment.objects.order_by("-last_index").first()
        try:
            if last is not None and last.rows_deleted_at is None:
                _complete(last)  # a run before this one stopped half-way
                report.resumed += 1
            while lease_claim("archive", owner):
                segment, data = _record_next(last, cutoff, sealed)
                if segment is None:
                    break
                _complete(segment, data)
                report.segments += 1
                report.rows += segment.row_count
                last = segment
        except ArchiveRefused as refused:
            logger.error("audit archive refused: %s", refused)
            report.refused["log"] = str(refused)
    return report


def _record_next(
    last: ArchiveSegment | None, cutoff: datetime.datetime, sealed: int
) -> tuple[ArchiveSegment | None, bytes]:
    start = last.last_index + 1 if last else 0
    upto = min(sealed, start + settings.AUDIT_SEGMENT_MAX_ROWS)
    entries: list[LogEntry] = []
    size = 0
    for entry in live_entries(start, upto):
        if entry.index != start + len(entries):
            raise ArchiveRefused(f"leaf {start + len(entries)} has no live entry to archive")
        if entry.created_at is None or entry.created_at >= cutoff:
            break
        if trail.entry_hash(entry.prev_hash, entry.body) != entry.hash:
            raise ArchiveRefused(f"the entry at index {entry.index} does not match its hash")
        entries.append(entry)
        size += len(entry.body) + 200
        if size >= settings.AUDIT_SEGMENT_MAX_BYTES:
            break
    if not entries:
        return None, b""
    built = build_segment(entries)
    return _insert_segment(built, entries[0].created_at, entries[-1].created_at), built.data


@db.atomic
def _insert_segment(built, first_created_at, last_created_at) -> ArchiveSegment:
    return ArchiveSegment.objects.create(
        first_index=built.first_index,
        last_index=built.last_index,
        row_count=built.count,
        file_digest=built.digest,
        file_size=len(built.data),
        storage_path=segment_path(built.first_index, built.last_index),
        first_created_at=first_created_at,
        last_created_at=last_created_at,
    )


def _complete(segment: ArchiveSegment, data: bytes | None = None) -> None:
    """Steps 2 to 4 for a recorded segment, from wherever an earlier run stopped."""
    if segment.verified_at is None:
        if data is None:
            entries = list(live_entries(segment.first_index, segment.last_index + 1))
            if len(entries) != segment.row_count:
                raise ArchiveRefused(f"segment {segment}: unverified, and its entries are gone")
            built = build_segment(entries)
            if built.digest != segment.file_digest:
                raise ArchiveRefused(f"segment {segment}: the live entries no longer make its file")
            data = built.data
        write_segment_file(segment, data)
        _step("written")
        problem = _check_written(segment)
        if problem:
            raise ArchiveRefused(f"segment {segment}: read back, {problem}")
        _mark(segment, "verified_at")
        _step("verified")
    _delete_rows(segment)
    _mark(segment, "rows_deleted_at")


def _check_written(segment: ArchiveSegment) -> str:
    problem = check_segment(segment)
    if problem:
        return problem
    try:
        archived = read_segment(segment)
    except SegmentProblem as unreadable:  # pragma: no cover - check_segment read it just now
        return f"{unreadable.kind}: {unreadable.detail}"
    live = {
        entry.index: entry.hash
        for entry in live_entries(segment.first_index, segment.last_index + 1)
    }
    for entry in archived:
        if live.get(entry.index) != entry.hash:
            return f"index {entry.index} differs from the live entry"
    return ""


@db.atomic
def _mark(segment: ArchiveSegment, stamp: str) -> None:
    now = timezone.now()
    ArchiveSegment.objects.filter(pk=segment.pk, **{f"{stamp}__isnull": True}).update(
        **{stamp: now}
    )
    setattr(segment, stamp, getattr(segment, stamp) or now)


def _delete_rows(segment: ArchiveSegment) -> None:
    ids = list(
        LogLeaf.objects.filter(
            index__gte=segment.first_index, index__lte=segment.last_index
        ).values_list("entry_id", flat=True)
    )
    live = sorted(AuditEntry.objects.filter(id__in=ids).values_list("id", flat=True))
    batch = settings.AUDIT_ARCHIVE_DELETE_BATCH
    for start in range(0, len(live), batch):
        _delete_batch(live[start : start + batch])
        _step("deleted_batch")


@db.atomic
def _delete_batch(entry_ids: list[int]) -> None:
    # Raw SQL: the ORM refuses deletes of audit entries; the trigger checks every one.
    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(entry_ids))
        cursor.execute(f"DELETE FROM audit_auditentry WHERE id IN ({marks})", entry_ids)  # noqa: S608


def archive_backlog(now: datetime.datetime | None = None) -> int:
    """How many live audit entries are older than ``AUDIT_ARCHIVE_AFTER`` (a gauge)."""
    cutoff = (now or timezone.now()) - settings.AUDIT_ARCHIVE_AFTER
    return AuditEntry.objects.filter(created_at__lt=cutoff).count()


def segment_check(segment_id: int) -> ArchiveSegment:
    """Check one segment on demand (an auditor's button): the file against its record,
    every row hash and link, the link to the previous segment. The result is stored on the
    segment (``checked_at``, ``check_ok``, ``check_detail``) and returned."""
    segment = ArchiveSegment.objects.get(pk=segment_id)
    if segment.purged_at:
        ok, detail = None, "purged at the end of retention: the file is gone by design"
    elif segment.verified_at is None:
        ok, detail = None, "not verified yet: the archiver has not finished this segment"
    else:
        problem = check_segment(segment)
        ok, detail = not problem, problem or f"{segment.row_count} entries check"
    ArchiveSegment.objects.filter(pk=segment.pk).update(
        checked_at=timezone.now(), check_ok=ok, check_detail=detail[:500]
    )
    segment.refresh_from_db()
    return segment
