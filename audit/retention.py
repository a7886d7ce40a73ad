"""Retention: archive segments older than ``AUDIT_RETENTION`` are purged, in the log itself.

A prefix of the log's archived segments whose newest entry is older than the retention
boundary is purged. Each candidate file is read and checked first; a segment holding an entry
under legal hold stops the purge there (the purged part of the log is a prefix: what follows
a held segment stays too), as does a file that does not check (reported, never dropped).

In one transaction the purge writes a ``RetentionPurge`` record (the index range and every
removed segment's range, digest and entry count), marks the segments purged and appends an
audit entry naming the purge (``audit.retention_purged``, actor: the task or the command),
which the next checkpoint seals. After the commit the files are removed from storage; a crash
in between leaves files that the next run removes. The tree's nodes stay, so verification
resumes after the purged prefix and proofs of every later entry still verify.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from django.apps import apps
from django.conf import settings
from django.utils import timezone

from audit.actions import Action
from audit.leases import leased
from audit.models import ArchiveSegment, LegalHold, RetentionPurge
from audit.report import LogEntry
from audit.segments import SegmentProblem, read_segment, storage
from audit.services import audit_record
from payflow.platform import context, db, trail

MERCHANT = "ledger.merchant"

logger = logging.getLogger(__name__)


class ConcurrentPurge(RuntimeError):
    """Another purge marked some of these segments first: this one rolls back."""


# --- legal holds ------------------------------------------------------------------------


@dataclass
class Holds:
    merchants: set[str] = field(default_factory=set)
    objects: set[tuple[str, str]] = field(default_factory=set)

    def covers(self, entry: LogEntry) -> bool:
        fields = json.loads(entry.body)
        key = (fields.get("object_type"), fields.get("object_id"))
        if key in self.objects or (key[0] == MERCHANT and key[1] in self.merchants):
            return True
        return any(
            isinstance(values, dict) and values.get("merchant") in self.merchants
            for values in (fields.get("new"), fields.get("old"))
        )


def current_holds() -> Holds:
    """Merchants flagged ``legal_hold`` and every unreleased ``LegalHold``."""
    merchant = apps.get_model("ledger", "Merchant")
    holds = Holds(
        merchants={
            str(pk) for pk in merchant.objects.filter(legal_hold=True).values_list("pk", flat=True)
        }
    )
    for object_type, object_id in LegalHold.objects.filter(released_at__isnull=True).values_list(
        "object_type", "object_id"
    ):
        holds.objects.add((object_type, object_id))
        if object_type == MERCHANT:
            holds.merchants.add(object_id)
    return holds


# --- the purge --------------------------------------------------------------------------


@dataclass
class PurgeReport:
    purge_id: int | None = None
    segments: int = 0
    rows: int = 0
    files_removed: int = 0
    held: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def audit_retention_purge(*, now=None) -> PurgeReport:
    """Purge the segments past retention (before ``now``), recorded in the log.

    Idempotent and safe to run twice at once (a lease; the segments are marked purged by a
    conditional UPDATE in the record's transaction)."""
    now = now or timezone.now()
    report = PurgeReport()
    with leased("retention") as owner:
        if owner is None:
            report.skipped = "another purge holds the lease"
            return report
        chosen = _candidates(now - settings.AUDIT_RETENTION, current_holds(), report)
        if chosen:
            purge = _record_purge(chosen, now)
            report.purge_id, report.segments = purge.id, purge.segment_count
            report.rows = purge.row_count
        report.files_removed = _remove_files()
    return report


def _candidates(boundary, holds: Holds, report: PurgeReport) -> list[ArchiveSegment]:
    chosen = []
    for segment in ArchiveSegment.objects.filter(purged_at__isnull=True).order_by("first_index"):
        if segment.rows_deleted_at is None or not segment.last_created_at:
            break
        if segment.last_created_at >= boundary:
            break
        try:
            entries = read_segment(segment)
        except SegmentProblem as unreadable:
            report.problems.append(str(unreadable))
            break
        broken = next(
            (e.index for e in entries if trail.entry_hash(e.prev_hash, e.body) != e.hash), None
        )
        if broken is not None:
            report.problems.append(f"segment {segment}: index {broken} does not match its hash")
            break
        if any(holds.covers(entry) for entry in entries):
            report.held.append(str(segment))
            break
        chosen.append(segment)
    for problem in report.problems:
        logger.error("retention purge stopped: %s", problem)
    return chosen


@db.atomic
def _record_purge(segments: list[ArchiveSegment], now) -> RetentionPurge:
    described = [_described(segment) for segment in segments]
    purge = RetentionPurge.objects.create(
        created_at=now,
        first_index=segments[0].first_index,
        last_index=segments[-1].last_index,
        segment_count=len(segments),
        row_count=sum(segment.row_count for segment in segments),
        detail=described,
    )
    marked = ArchiveSegment.objects.filter(
        pk__in=[segment.pk for segment in segments], purged_at__isnull=True
    ).update(purged_at=now, purge=purge)
    if marked != len(segments):
        raise ConcurrentPurge("another purge marked some of these segments first")
    audit_record(
        object_type="audit.retentionpurge",
        object_id=str(purge.id),
        action=Action.PURGE,
        event_type="audit.retention_purged",
        old_values=None,
        new_values={
            "first_index": purge.first_index,
            "last_index": purge.last_index,
            "segments": described,
            "rows": purge.row_count,
            "retention_seconds": int(settings.AUDIT_RETENTION.total_seconds()),
        },
    )
    return purge


def _described(segment: ArchiveSegment) -> dict:
    return {
        "first_index": segment.first_index,
        "last_index": segment.last_index,
        "row_count": segment.row_count,
        "file_digest": segment.file_digest,
        "storage_path": segment.storage_path,
    }


def _remove_files() -> int:
    """Remove the files of purged segments (after the record committed). Outside any
    transaction; a file already gone counts as removed."""
    pending = ArchiveSegment.objects.filter(purged_at__isnull=False, file_removed_at__isnull=True)
    removed = 0
    for segment in pending.order_by("id"):
        storage().delete(segment.storage_path)
        ArchiveSegment.objects.filter(pk=segment.pk, file_removed_at__isnull=True).update(
            file_removed_at=timezone.now()
        )
        removed += 1
    return removed


@db.atomic
def legal_hold_place(*, object_type: str, object_id: str, reason: str, placed_by: str) -> LegalHold:
    """Place a hold (audited: ``audit.legal_hold_placed``). ``ValueError`` for a blank
    reason or person, or an object type that is not audited."""
    object_type, object_id = object_type.strip(), object_id.strip()
    if not reason.strip() or not placed_by.strip():
        raise ValueError("a legal hold needs a reason and the person who orders it")
    if not object_type or not object_id or "." not in object_type:
        raise ValueError("name the object as <app>.<model> and its id, e.g. ledger.merchant <id>")
    hold = LegalHold.objects.create(
        object_type=object_type[:64],
        object_id=object_id[:64],
        reason=reason.strip()[:500],
        placed_by=placed_by.strip()[:200],
    )
    _audit_hold(hold, "audit.legal_hold_placed", "insert")
    return hold


@db.atomic
def legal_hold_release(*, hold_id: int, released_by: str) -> LegalHold:
    """Release a hold in force (audited: ``audit.legal_hold_released``)."""
    hold = LegalHold.objects.select_for_update().get(pk=hold_id, released_at__isnull=True)
    LegalHold.objects.filter(pk=hold.pk).update(released_at=timezone.now())
    hold.refresh_from_db()
    with context.bind(reason=f"released by {released_by}"[:500]):
        _audit_hold(hold, "audit.legal_hold_released", "update")
    return hold


def _audit_hold(hold: LegalHold, event_type: str, action: str) -> None:
    audit_record(
        object_type="audit.legalhold",
        object_id=str(hold.id),
        action=action,
        event_type=event_type,
        old_values=None,
        new_values={
            "object_type": hold.object_type,
            "object_id": hold.object_id,
            "reason": hold.reason,
            "placed_by": hold.placed_by,
            "released_at": hold.released_at.isoformat() if hold.released_at else None,
        },
    )
