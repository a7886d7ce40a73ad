"""What verification reads and what it reports: log entries, breaks, the report."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from audit.objects import public_id, public_ids

MAX_BREAKS = 200
#: Breaks that name a damaged part of the log as a whole (one each, however many entries it
#: holds): kept in a full report, in place of the latest of the others, so the cause of a
#: run of ``entry_missing`` breaks is always named.
PRIORITY_KINDS = frozenset({"segment_altered", "segment_missing", "purge_record_mismatch"})


@dataclass
class Break:
    kind: str
    object_type: str = ""
    object_id: str = ""
    index: int | None = None
    detail: str = ""

    def as_dict(self, known_public_id: str | None = None) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "public_id": (
                public_id(self.object_type, self.object_id)
                if known_public_id is None
                else known_public_id
            ),
            "index": self.index,
            "detail": self.detail,
        }


@dataclass
class VerificationReport:
    entries: int = 0
    size: int = 0
    checkpoint_size: int = 0
    checkpoints: int = 0
    rows_reconciled: int = 0
    breaks: list[Break] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.breaks

    def add(self, broken: Break) -> None:
        """Keep the first ``MAX_BREAKS`` breaks; past that, a ``PRIORITY_KINDS`` break
        still goes in, in place of the latest break of another kind."""
        if len(self.breaks) < MAX_BREAKS:
            self.breaks.append(broken)
            return
        self.truncated = True
        if broken.kind not in PRIORITY_KINDS:
            return
        for position in range(len(self.breaks) - 1, -1, -1):
            if self.breaks[position].kind not in PRIORITY_KINDS:
                del self.breaks[position]
                self.breaks.append(broken)
                return

    def breaks_as_dicts(self) -> list[dict[str, Any]]:
        """The breaks as ``Break.as_dict`` gives them, their public ids in one query."""
        known = public_ids([(b.object_type, b.object_id) for b in self.breaks])
        return [b.as_dict(known[(b.object_type, b.object_id)]) for b in self.breaks]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "size": self.size,
            "checkpoint_size": self.checkpoint_size,
            "checkpoints": self.checkpoints,
            "rows_reconciled": self.rows_reconciled,
            "breaks": self.breaks_as_dicts(),
            "truncated": self.truncated,
        }


@dataclass(slots=True)
class LogEntry:
    """One leaf's entry as verification reads it (from a live row or a segment line)."""

    index: int
    prev_hash: str
    hash: str
    body: bytes
    columns: tuple[Any, ...] | None = None  # live rows: the indexed columns, to check
    created_at: datetime.datetime | None = None
