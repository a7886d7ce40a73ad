"""Verification of the audit log: one pass in log order, then reconciliation.

For every leaf, in index order (archived segments and live entries as one sequence):

- ``entry_missing``: the leaf's entry is neither live nor in a readable segment;
- ``hash_mismatch``: the stored body does not hash, with its ``prev_hash``, to its hash
  (the entry was edited);
- ``column_mismatch``: an indexed column disagrees with the body;
- ``leaf_mismatch``: the entry's hash is not what the leaf was when it was sequenced (the
  stored leaf node): an entry rewritten and re-hashed after sequencing, or leaves swapped;
- ``chain_broken``: the entry does not follow its object's previous entry (inserted,
  deleted or reordered entries of one object);
- ``root_mismatch``: the tree rebuilt from the leaves differs from a signed checkpoint;
- ``bad_signature``: a checkpoint whose note does not verify with ``AUDIT_PUBLIC_KEY``, or
  whose stored size/root differ from its signed text;
- ``unsealed``: leaves older than ``AUDIT_SEQUENCER_MAX_LAG_SECONDS`` that no checkpoint
  covers (checkpoints deleted, or the sequencer down);
- ``unsequenced``: committed entries the sequencer has not taken that long after;
- ``segment_altered``/``segment_missing``: an archive segment that cannot be trusted.

Then reconciliation (``audit.reconcile``): every audited row against its latest entry.
Every break names its kind and the object (type, id and public id); the report keeps the
first ``MAX_BREAKS``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, connections
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit import segments, tlog
from audit.models import ArchiveSegment, AuditEntry, Checkpoint, LogLeaf, LogNode
from audit.reconcile import reconcile_rows
from audit.report import Break, LogEntry, VerificationReport
from audit.sequencer import log_size
from payflow.platform import trail

__all__ = ["Break", "LogEntry", "VerificationReport", "verify_log"]

CHUNK = 20_000
COLUMNS = (
    "object_type",
    "object_id",
    "action",
    "event_type",
    "request_id",
    "actor_type",
    "actor_id",
)


def signed_checkpoints(report: VerificationReport) -> list[tuple[int, bytes]]:
    """Every stored checkpoint whose note verifies: (size, root), ascending."""
    verifier = tlog.Verifier(settings.AUDIT_PUBLIC_KEY)
    good = []
    for size, root, note in Checkpoint.objects.order_by("size").values_list("size", "root", "note"):
        try:
            signed = tlog.verify_note(note, verifier)
        except tlog.NoteError as exc:
            report.add(Break("bad_signature", detail=f"checkpoint {size}: {exc}"))
            continue
        if (
            signed.size != size
            or signed.root.hex() != root
            or signed.origin != settings.AUDIT_LOG_ORIGIN
        ):
            report.add(
                Break("bad_signature", detail=f"checkpoint {size}: row differs from its note")
            )
            continue
        good.append((size, signed.root))
    report.checkpoints = len(good)
    return good


def verify_log(
    *,
    start: int = 0,
    progress: Callable[[int, int], None] | None = None,
    reconcile: bool = True,
    entries: Callable[[int, int], Iterator[LogEntry]] | None = None,
) -> VerificationReport:
    """Verify the log (and, with ``reconcile``, the ledger against it).

    ``start > 0`` is an incremental run from a size an earlier run verified: the tree
    resumes from the stored nodes there, and an object's first entry in the range must link
    to an existing entry of that object (one lookup per chunk); no reconciliation."""
    report = VerificationReport()
    checkpoints = signed_checkpoints(report)
    size = tlog_size()
    report.size = size
    report.checkpoint_size = checkpoints[-1][0] if checkpoints else 0
    problems: list[Any] = []
    read = entries or (lambda first, upto: segments.log_entries(first, upto, problems))
    tips: dict[tuple[str, str], str] = {}
    purged_before = max(segments.purged_before(), start)
    if start:
        reconcile = False
    # After a retention purge (or from an incremental run's start) the tree resumes from
    # the stored nodes of the prefix.
    compact = tlog.CompactRange.from_nodes(purged_before, _stored_nodes)
    pending = [(s, root) for s, root in checkpoints if s >= purged_before]
    pending.reverse()
    chunks = [(first, min(size, first + CHUNK)) for first in range(purged_before, size, CHUNK)]
    for (start, upto), (entries_read, stored_leaves) in zip(
        chunks, _read_ahead(chunks, read), strict=True
    ):
        unresolved: list[tuple[tuple[str, str], str, int]] = []
        got = {entry.index: entry for entry in entries_read}
        leaves = []
        for index in range(start, upto):
            found = got.get(index)
            if found is None:
                report.add(Break("entry_missing", index=index, detail="no live row, no segment"))
                leaves.append(stored_leaves.get(index, bytes(32)))
                continue
            leaves.append(
                _check_entry(found, tips, stored_leaves, report, purged_before, unresolved)
            )
        _resolve_links(unresolved, report)
        # Compare with every checkpoint inside this chunk, at its exact size.
        position = start
        while pending and pending[-1][0] <= upto:
            checkpoint_size, root = pending.pop()
            if checkpoint_size < position:
                continue
            compact.append(leaves[position - start : checkpoint_size - start])
            position = checkpoint_size
            if compact.root() != root:
                report.add(
                    Break(
                        "root_mismatch",
                        detail=f"the tree at size {checkpoint_size} is not the signed one",
                    )
                )
        compact.append(leaves[position - start :])
        report.entries += upto - start
        if progress:
            progress(upto, size)
    for checkpoint_size, _ in pending:
        report.add(
            Break(
                "root_mismatch",
                detail=f"checkpoint at {checkpoint_size} is beyond the log ({size})",
            )
        )
    for segment_id in sorted({problem.segment.id for problem in problems}):
        problem = next(p for p in problems if p.segment.id == segment_id)
        report.add(Break(problem.kind, index=problem.segment.first_index, detail=str(problem)))
    _check_sealed(report, size)
    _check_sequenced(report)
    if reconcile:
        reconcile_rows(report, tips)
    return report


def _read_ahead(chunks, read) -> Iterator[tuple[list[LogEntry], dict[int, bytes]]]:
    """Each chunk's entries and stored leaves, the next chunk read by a second connection
    while this one is checked (the server works while Python hashes). Inside a transaction
    (a test's) another connection would not see its rows: read in line then."""

    def fetch(chunk):
        try:
            return list(read(*chunk)), _stored_leaves(*chunk)
        finally:
            if not in_line:
                connections.close_all()  # this thread's connection

    in_line = connection.in_atomic_block or connection.vendor != "mysql"
    if in_line or not chunks:
        for chunk in chunks:
            yield list(read(*chunk)), _stored_leaves(*chunk)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch, chunks[0])
        for position in range(len(chunks)):
            current = pending.result()
            if position + 1 < len(chunks):
                pending = pool.submit(fetch, chunks[position + 1])
            yield current


def tlog_size() -> int:
    return log_size()


def _stored_leaves(start: int, upto: int) -> dict[int, bytes]:
    rows = LogNode.objects.filter(key__gte=start, key__lt=upto).values_list("key", "hash")
    return {key: bytes(digest) for key, digest in rows}


def _stored_nodes(keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    wanted = {tlog.node_key(level, index): (level, index) for level, index in keys}
    rows = LogNode.objects.filter(key__in=list(wanted)).values_list("key", "hash")
    return {wanted[key]: bytes(digest) for key, digest in rows}


def _check_entry(
    entry: LogEntry,
    tips: dict[tuple[str, str], str],
    stored_leaves: dict[int, bytes],
    report: VerificationReport,
    purged_before: int,
    unresolved: list[tuple[tuple[str, str], str, int]],
) -> bytes:
    try:
        parsed = orjson.loads(entry.body)
        key = (parsed["object_type"], parsed["object_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        parsed, key = None, ("", "")
    object_type, object_id = key
    digest = entry.hash
    if parsed is None or trail.entry_hash(entry.prev_hash, entry.body) != entry.hash:
        report.add(
            Break("hash_mismatch", object_type, object_id, entry.index, "body or hash edited")
        )
    elif entry.columns is not None:
        actor = parsed["actor"]
        expected = (
            parsed["object_type"],
            parsed["object_id"],
            parsed["action"],
            parsed["event_type"],
            parsed["request_id"],
            actor["type"],
            actor["id"],
            parsed["created_at"],
        )
        if expected != entry.columns:
            report.add(
                Break(
                    "column_mismatch",
                    object_type,
                    object_id,
                    entry.index,
                    "a column differs from the body",
                )
            )
    leaf = tlog.leaf_hash_of_entry(bytes.fromhex(digest))
    stored = stored_leaves.get(entry.index)
    if stored is not None and stored != leaf:
        report.add(
            Break(
                "leaf_mismatch",
                object_type,
                object_id,
                entry.index,
                "not the entry that was sequenced",
            )
        )
    expected_prev = tips.get(key, trail.GENESIS_HASH)
    if key not in tips and purged_before and entry.prev_hash != trail.GENESIS_HASH:
        unresolved.append((key, entry.prev_hash, entry.index))
    elif entry.prev_hash != expected_prev:
        report.add(
            Break(
                "chain_broken",
                object_type,
                object_id,
                entry.index,
                "does not follow the object's previous entry",
            )
        )
    tips[key] = digest
    return leaf


def _resolve_links(
    unresolved: list[tuple[tuple[str, str], str, int]], report: VerificationReport
) -> None:
    """Entries whose object's previous entry is before the range: it must exist (live)
    and be of the same object. Before a retention purge it may be gone: then accepted."""
    if not unresolved:
        return
    found = {
        digest: (object_type, object_id)
        for digest, object_type, object_id in AuditEntry.objects.filter(
            hash__in=[prev for _, prev, _ in unresolved]
        ).values_list("hash", "object_type", "object_id")
    }
    purged = segments.purged_before()
    for key, prev, index in unresolved:
        owner = found.get(prev)
        if owner == key:
            continue
        if owner is None and index >= purged and _archived_prefix_exists():
            continue
        report.add(
            Break("chain_broken", key[0], key[1], index, "links to no earlier entry of the object")
        )


def _archived_prefix_exists() -> bool:
    """Whether a prefix of the log left the live table (archived, perhaps purged since).

    A link to an entry that is no longer live is then accepted here: the linking entry's
    ``prev_hash`` is inside its leaf, which the signed tree covers (``leaf_mismatch`` /
    ``root_mismatch`` otherwise), and the archived entries themselves are checked against
    their segment files (``segment_*``)."""
    return ArchiveSegment.objects.filter(rows_deleted_at__isnull=False).exists()


def _check_sealed(report: VerificationReport, size: int) -> None:
    if size <= report.checkpoint_size:
        return
    lag = datetime.timedelta(seconds=settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS)
    first = (
        LogLeaf.objects.filter(index=report.checkpoint_size)
        .values_list("entry_id", flat=True)
        .first()
    )
    entry = (
        AuditEntry.objects.filter(id=first or 0)
        .values_list("object_type", "object_id", "created_at")
        .first()
    )
    if entry is None or entry[2] < timezone.now() - lag:
        object_type, object_id = (entry[0], entry[1]) if entry else ("", "")
        report.add(
            Break(
                "unsealed",
                object_type,
                object_id,
                report.checkpoint_size,
                f"leaves {report.checkpoint_size}..{size - 1} are in no checkpoint",
            )
        )


def _check_sequenced(report: VerificationReport) -> None:
    cutoff = timezone.now() - datetime.timedelta(seconds=settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS)
    in_log = LogLeaf.objects.filter(entry_id=OuterRef("id"))
    waiting = (
        AuditEntry.objects.filter(created_at__lt=cutoff)
        .exclude(Exists(in_log))
        .order_by("id")
        .values_list("object_type", "object_id")[:5]
    )
    for object_type, object_id in waiting:
        report.add(
            Break("unsequenced", object_type, object_id, None, "committed but not in the log")
        )
