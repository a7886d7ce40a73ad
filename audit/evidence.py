"""Evidence bundles from the database (format ``payflow-evidence/1``, see
``tools/verify_evidence.py``): a lane range, the signed checkpoints up to the one covering
it, and an inclusion proof for every entry. An auditor checks a bundle offline with only
the public key."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from audit import signing
from audit.merkle import MerkleTree
from audit.models import AuditCheckpoint
from audit.segments import SegmentProblem, lane_hashes, lane_rows


class NothingToExport(ValueError):
    """The range is empty, or no signed checkpoint covers it yet."""


def _tree(body: dict[str, Any]) -> MerkleTree:
    leaves: list[bytes] = []
    for covered in body["tree"]["ranges"]:
        rows = lane_hashes(covered["lane"], covered["first_seq"] - 1, covered["last_seq"])
        leaves.extend(bytes.fromhex(digest) for _, digest in rows)
    return MerkleTree(leaves)


def _covers(body: dict[str, Any], lane: int, seq: int) -> bool:
    return any(
        r["lane"] == lane and r["first_seq"] <= seq <= r["last_seq"] for r in body["tree"]["ranges"]
    )


def evidence_export(*, lane: int, first_seq: int, last_seq: int) -> dict[str, Any]:
    """The bundle for lane rows ``first_seq..last_seq`` (capped at the last signed head),
    archived rows read from their segment files. ``NothingToExport`` also when a segment
    file needed cannot be trusted (verification names the problem)."""
    try:
        return _export(lane=lane, first_seq=first_seq, last_seq=last_seq)
    except SegmentProblem as problem:
        raise NothingToExport(f"cannot export: {problem.kind}: {problem}") from problem


def _export(*, lane: int, first_seq: int, last_seq: int) -> dict[str, Any]:
    checkpoints = list(AuditCheckpoint.objects.order_by("number"))
    if not checkpoints:
        raise NothingToExport("no signed checkpoint yet: wait for the next one (every 5 minutes)")
    heads = {h["lane"]: h["seq"] for h in checkpoints[-1].signed["body"]["lanes"]}
    last_seq = min(last_seq, heads.get(lane, 0))
    rows = list(lane_rows(lane, max(first_seq, 1) - 1, last_seq))
    if not rows:
        raise NothingToExport(f"lane {lane} has no signed rows in {first_seq}..{last_seq}")
    # Consecutive checkpoints from the first up to the last one that covers a row.
    needed = [c for c in checkpoints if any(_covers(c.signed["body"], lane, r.seq) for r in rows)]
    included = [c for c in checkpoints if c.number <= needed[-1].number]
    entries = [
        {
            "lane": r.lane,
            "seq": r.seq,
            "prev_hash": r.prev_hash,
            "hash": r.hash,
            "canonical": r.canonical,
        }
        for r in rows
    ]
    return signing.evidence_bundle(
        checkpoints=[c.signed for c in included],
        entry_ranges=[(lane, rows[0].seq, rows[-1].seq)],
        entries=entries,
        trees={c.number: _tree(c.signed["body"]) for c in needed},
        description=f"lane {lane}, seq {rows[0].seq}..{rows[-1].seq}",
        exported_at=timezone.now(),
    )
