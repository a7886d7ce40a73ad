"""Verification of the audit chain: every lane streamed in seq order, every hash recomputed.

Per lane, the first break is reported with its kind:

- ``row_altered``: the row's stored hash no longer matches its own contents;
- ``row_missing``: a seq is skipped (a row was deleted);
- ``row_inserted_or_reordered``: the row's contents hash correctly but its ``prev_hash``
  does not link to the previous row (a forged row, or rows swapped);
- ``head_mismatch``: the lane head disagrees with the last row;
- ``checkpoint_mismatch``: the row at a signed checkpoint's head differs from what the
  checkpoint signed (the chain was recomputed after an edit);
- ``segment_missing``, ``segment_altered``, ``segment_replaced``, ``segment_mismatch``: an
  archive segment file that cannot be trusted (``audit.segments``);
- ``retention_record_invalid``: a retention purge record whose signature does not verify.

A lane is one chain across its archive segments and its live rows (``audit.segments``
``lane_rows``); after a retention purge it starts at the signed boundary the purge left.

Memory stays bounded: live rows are read in chunks, segment files one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from audit.checkpoints import checkpoint_anchors
from audit.models import GENESIS_HASH, AuditCheckpoint, LaneHead, VerificationRun
from audit.retention import RetentionRecordInvalid, retention_boundaries
from audit.segments import ChainRow, SegmentProblem, lane_rows


@dataclass
class LaneResult:
    lane: int
    rows: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    break_kind: str = ""
    break_seq: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.break_kind


@dataclass
class VerificationReport:
    lanes: list[LaneResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(lane.ok for lane in self.lanes)

    @property
    def rows(self) -> int:
        return sum(lane.rows for lane in self.lanes)

    @property
    def breaks(self) -> list[LaneResult]:
        return [lane for lane in self.lanes if not lane.ok]


def verify_lane(
    lane: int,
    *,
    start_seq: int = 0,
    start_hash: str = GENESIS_HASH,
    anchors: dict[int, str] | None = None,
) -> LaneResult:
    """Verify one lane from ``start_seq`` (0: from the genesis), archived and live rows.

    ``anchors`` maps seqs to hashes a signed checkpoint vouched for.
    """
    result = LaneResult(lane=lane, head_seq=start_seq, head_hash=start_hash)
    anchors = anchors or {}
    expected_seq, expected_prev = start_seq + 1, start_hash
    try:
        for row in lane_rows(lane, start_seq):
            kind, detail = _check(row, expected_seq, expected_prev, anchors)
            if kind:
                result.break_kind, result.break_seq, result.detail = kind, row.seq, detail
                if kind == "row_missing":
                    result.break_seq = expected_seq
                return result
            result.rows += 1
            result.head_seq, result.head_hash = row.seq, row.hash
            expected_seq, expected_prev = row.seq + 1, row.hash
    except SegmentProblem as problem:
        result.break_kind, result.break_seq = problem.kind, problem.segment.first_seq
        result.detail = f"segment {problem.segment.storage_path}: {problem.detail}"
        return result
    head = LaneHead.objects.filter(lane=lane).first()
    if head is not None and (head.seq, head.hash) != (result.head_seq, result.head_hash):
        result.break_kind, result.break_seq = "head_mismatch", head.seq
        result.detail = f"lane head says seq {head.seq}, the rows end at {result.head_seq}"
    return result


def _check(row: ChainRow, seq: int, prev: str, anchors: dict[int, str]) -> tuple[str, str]:
    if row.seq != seq:
        return "row_missing", f"expected seq {seq}, found {row.seq}"
    if not row.hash_ok():
        moved_from = row.written_seq()
        if moved_from is not None:
            return "row_inserted_or_reordered", f"this row was written as seq {moved_from}"
        return "row_altered", "the row's contents do not match its hash"
    if row.fields is None:  # from a segment file: the line's seq is outside the hash
        moved_from = row.written_seq()
        if moved_from is not None:
            return "row_inserted_or_reordered", f"this row was written as seq {moved_from}"
    if row.prev_hash != prev:
        return "row_inserted_or_reordered", "prev_hash does not link to the previous row"
    anchored = anchors.get(row.seq)
    if anchored is not None and anchored != row.hash:
        return "checkpoint_mismatch", "differs from the hash a signed checkpoint recorded"
    return "", ""


def verify_all(
    *,
    lanes: list[int] | None = None,
    anchors: dict[int, dict[int, str]] | None = None,
    starts: dict[int, tuple[int, str]] | None = None,
    progress: Callable[[int, LaneResult], None] | None = None,
) -> VerificationReport:
    """Verify every lane (or ``lanes``), optionally from known-good ``starts`` (incremental)."""
    report = VerificationReport()
    if anchors is None:
        anchors = checkpoint_anchors()
    try:
        boundaries = retention_boundaries()
    except RetentionRecordInvalid as invalid:
        for lane in lanes if lanes is not None else range(settings.AUDIT_LANES):
            report.lanes.append(
                LaneResult(lane, break_kind="retention_record_invalid", detail=str(invalid))
            )
        return report
    for lane in lanes if lanes is not None else range(settings.AUDIT_LANES):
        start_seq, start_hash = max(
            (starts or {}).get(lane, (0, GENESIS_HASH)), boundaries.get(lane, (0, GENESIS_HASH))
        )
        result = verify_lane(
            lane, start_seq=start_seq, start_hash=start_hash, anchors=(anchors or {}).get(lane)
        )
        report.lanes.append(result)
        if progress:
            progress(lane, result)
    return report


def incremental_starts() -> tuple[dict[int, tuple[int, str]], int | None]:
    """Where an incremental run starts: the heads of the latest checkpoint that a successful
    earlier run verified (every row up to them was checked then). Empty: verify in full."""
    last_ok = (
        VerificationRun.objects.filter(ok=True, checkpoint_number__isnull=False)
        .order_by("-checkpoint_number")
        .first()
    )
    if last_ok is None or last_ok.checkpoint_number is None:
        return {}, None
    checkpoint = AuditCheckpoint.objects.get(number=last_ok.checkpoint_number)
    starts = {h["lane"]: (h["seq"], h["hash"]) for h in checkpoint.signed["body"]["lanes"]}
    return starts, checkpoint.number
