"""The archiver: audit rows older than ``AUDIT_ARCHIVE_AFTER`` move to segment files.

Per lane, in seq order, a prefix of the lane's live rows is archived, one segment at a time:

1. **record** — the next rows (older than the cutoff, and covered by a signed checkpoint, so
   every archived row is anchored by a signature) are read and checked as a chain that
   continues the previous segment; the segment row is inserted (``verified_at`` NULL) with
   the digest of the file those rows make. One short transaction.
2. **write** — the file goes to the archive storage (outside any transaction: object
   storage is a network call). The file is deterministic, so a rerun rebuilds the same bytes.
3. **verify** — the file is read back: digest, header, every row hash and link, the link to
   the previous segment, and every hash against the live row it copies. Only then is the
   segment marked verified (conditional UPDATE).
4. **delete** — the live rows go in small transactions (``AUDIT_ARCHIVE_DELETE_BATCH``),
   which Galera replicates as small write sets. The DELETE trigger admits only rows a
   verified segment covers. Then ``rows_deleted_at`` is set.

A crash anywhere leaves the rows or a verified segment (never neither): the rows are only
deleted after step 3 committed. A rerun first finishes the lane's open segment (rewriting
the file if it is missing, re-verifying, deleting what is left), then goes on; the unique
(lane, first_seq) and the lease below keep anything from being archived twice.

Runs under a lease (``ArchiveLease``), so two runs at once never interleave; the second
returns at once. In production the task runs on a worker that connects as the archiver
database user (``manage.py audit_grants``, ``AUDIT_ARCHIVER_QUEUE``).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.utils import timezone

from audit.leases import lease_claim, leased
from audit.models import GENESIS_HASH, ArchiveSegment, AuditCheckpoint, AuditEntry
from audit.segments import (
    ChainRow,
    SegmentProblem,
    build_segment,
    chain_problem,
    check_segment,
    live_rows,
    previous_segment_hash,
    read_segment,
    rows_problem,
    segment_path,
    write_segment_file,
)
from payflow.platform import db

logger = logging.getLogger(__name__)


class ArchiveRefused(RuntimeError):
    """The archiver will not archive these rows (their chain does not hold, or the file
    does not match them); the lane is left as it is and the problem reported."""


def _step(name: str) -> None:
    """A named point between the archiver's steps (the kill tests stop the process here)."""


# --- the archiver -----------------------------------------------------------------------


@dataclass
class ArchiveReport:
    segments: int = 0
    rows: int = 0
    resumed: int = 0
    skipped: str = ""
    refused: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "segments": self.segments,
            "rows": self.rows,
            "resumed": self.resumed,
            "skipped": self.skipped,
            "refused": {str(lane): problem for lane, problem in self.refused.items()},
        }


def audit_archive(
    *, now: datetime.datetime | None = None, lanes: list[int] | None = None
) -> ArchiveReport:
    """Archive every lane's rows older than ``AUDIT_ARCHIVE_AFTER`` (before ``now``).

    Idempotent and safe to run twice at once (the second run finds the lease taken and
    returns ``skipped``). A lane whose rows do not chain is refused and reported, not
    archived; the other lanes go on."""
    now = now or timezone.now()
    report = ArchiveReport()
    with leased("archive") as owner:
        if owner is None:
            report.skipped = "another archiver holds the lease"
            return report
        cutoff = now - settings.AUDIT_ARCHIVE_AFTER
        signed = _signed_heads()
        for lane in lanes if lanes is not None else range(settings.AUDIT_LANES):
            try:
                _archive_lane(lane, cutoff, signed.get(lane, 0), report, owner)
            except ArchiveRefused as refused:
                logger.error("audit archive refused lane %s: %s", lane, refused)
                report.refused[lane] = str(refused)
    return report


def _signed_heads() -> dict[int, int]:
    latest = AuditCheckpoint.objects.order_by("-number").first()
    if latest is None:
        return {}
    return {head["lane"]: head["seq"] for head in latest.signed["body"]["lanes"]}


def _archive_lane(lane: int, cutoff, signed_upto: int, report: ArchiveReport, owner) -> None:
    last = ArchiveSegment.objects.filter(lane=lane).order_by("-last_seq").first()
    if last is not None and last.rows_deleted_at is None:
        _complete(last)  # a run before this one stopped half-way
        report.resumed += 1
    while lease_claim("archive", owner):
        segment, data = _record_next(lane, last, cutoff, signed_upto)
        if segment is None:
            return
        _complete(segment, data)
        report.segments += 1
        report.rows += segment.row_count
        last = segment


def _record_next(
    lane: int, last: ArchiveSegment | None, cutoff, signed_upto: int
) -> tuple[ArchiveSegment | None, bytes]:
    after = last.last_seq if last else 0
    rows: list[ChainRow] = []
    size = 0
    for row in live_rows(lane, after, signed_upto):
        if row.created_at >= cutoff:
            break
        rows.append(row)
        size += len(row.canonical) + 200
        if len(rows) >= settings.AUDIT_SEGMENT_MAX_ROWS or size >= settings.AUDIT_SEGMENT_MAX_BYTES:
            break
    if not rows:
        return None, b""
    prev = last.last_hash if last else GENESIS_HASH
    problem = chain_problem(rows, after + 1, prev)
    if problem:
        raise ArchiveRefused(f"the live rows do not continue the archived chain: {problem}")
    built = build_segment(lane, rows)
    return (
        _insert_segment(built, rows[0].created_at, rows[-1].created_at),
        built.data,
    )


@db.atomic
def _insert_segment(built, first_created_at, last_created_at) -> ArchiveSegment:
    return ArchiveSegment.objects.create(
        lane=built.lane,
        first_seq=built.first_seq,
        last_seq=built.last_seq,
        first_prev_hash=built.first_prev_hash,
        last_hash=built.last_hash,
        row_count=built.row_count,
        file_digest=built.digest,
        file_size=len(built.data),
        storage_path=segment_path(built.lane, built.first_seq, built.last_seq),
        first_created_at=first_created_at,
        last_created_at=last_created_at,
    )


def _complete(segment: ArchiveSegment, data: bytes | None = None) -> None:
    """Steps 2 to 4 for a recorded segment, from wherever an earlier run stopped."""
    if segment.verified_at is None:
        if data is None:
            rows = list(live_rows(segment.lane, segment.first_seq - 1, segment.last_seq))
            if not rows:
                raise ArchiveRefused(f"segment {segment}: unverified, and its rows are gone")
            built = build_segment(segment.lane, rows)
            if built.digest != segment.file_digest:
                raise ArchiveRefused(f"segment {segment}: the live rows no longer make its file")
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
    try:
        rows = read_segment(segment)  # read once: checked, then compared with the live rows
    except SegmentProblem as unreadable:
        return f"{unreadable.kind}: {unreadable.detail}"
    problem = rows_problem(segment, rows, previous_hash=previous_segment_hash(segment))
    if problem:
        return problem
    live = dict(
        AuditEntry.objects.filter(
            lane=segment.lane, seq__gte=segment.first_seq, seq__lte=segment.last_seq
        ).values_list("seq", "hash")
    )
    for row in rows:
        if live.get(row.seq) != row.hash:
            return f"seq {row.seq} differs from the live row"
    return ""


@db.atomic
def _mark(segment: ArchiveSegment, stamp: str) -> None:
    now = timezone.now()
    ArchiveSegment.objects.filter(pk=segment.pk, **{f"{stamp}__isnull": True}).update(
        **{stamp: now}
    )
    setattr(segment, stamp, getattr(segment, stamp) or now)


def _delete_rows(segment: ArchiveSegment) -> None:
    remaining = AuditEntry.objects.filter(
        lane=segment.lane, seq__gte=segment.first_seq, seq__lte=segment.last_seq
    ).aggregate(first=Min("seq"))["first"]
    if remaining is None:
        return
    batch = settings.AUDIT_ARCHIVE_DELETE_BATCH
    for start in range(remaining, segment.last_seq + 1, batch):
        _delete_batch(segment.lane, start, min(start + batch - 1, segment.last_seq))
        _step("deleted_batch")


@db.atomic
def _delete_batch(lane: int, first_seq: int, last_seq: int) -> None:
    # Raw SQL: the ORM refuses deletes of audit rows; the trigger checks every row.
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM audit_auditentry WHERE lane = %s AND seq BETWEEN %s AND %s",
            [lane, first_seq, last_seq],
        )


def archive_backlog(now: datetime.datetime | None = None) -> int:
    """How many live audit rows are older than ``AUDIT_ARCHIVE_AFTER`` (a gauge)."""
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
        problem = check_segment(segment, previous_hash=previous_segment_hash(segment))
        ok, detail = not problem, problem or f"{segment.row_count} rows check"
    ArchiveSegment.objects.filter(pk=segment.pk).update(
        checked_at=timezone.now(), check_ok=ok, check_detail=detail[:500]
    )
    segment.refresh_from_db()
    return segment
