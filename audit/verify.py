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
- ``segment_altered``/``segment_missing``: an archive segment that cannot be trusted
  (named before its entries' breaks, and kept in a full report);
- ``purge_record_mismatch``: a retention record that differs from the log's
  ``audit.retention_purged`` entry of that purge, records that do not cover the purged
  prefix one after the other, or a latest record with no such entry (``_check_purges``).

Then reconciliation (``audit.reconcile``): every audited row against its latest entry.
Every break names its kind and the object (type, id and public id); the report keeps the
first ``MAX_BREAKS`` (and, past them, the segment and purge breaks: ``PRIORITY_KINDS``).
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
from audit.models import (
    ArchiveSegment,
    AuditEntry,
    Checkpoint,
    LogLeaf,
    LogNode,
    RetentionPurge,
)
from audit.reconcile import reconcile_rows
from audit.report import Break, LogEntry, VerificationReport
from audit.sequencer import first_unsealed_entry, log_size, stored_nodes
from payflow.platform import trail

__all__ = ["Break", "LogEntry", "VerificationReport", "verify_log"]

CHUNK = 20_000
PURGE_TYPE = "audit.retentionpurge"
PURGE_EVENT = "audit.retention_purged"
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
) -> VerificationReport:
    """Verify the log (and, with ``reconcile``, the ledger against it).

    ``start > 0`` is an incremental run from a size an earlier run verified: the tree
    resumes from the stored nodes there, and an object's first entry in the range must link
    to an existing entry of that object (one lookup per chunk); no reconciliation."""
    report = VerificationReport()
    # Entries older than this must be in the log (``unsequenced``): the pass counts the
    # live ones it reads, the table is asked how many there are.
    cutoff = timezone.now() - datetime.timedelta(seconds=settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS)
    cutoff_text = trail.format_time(cutoff)
    old_live_read = 0
    checkpoints = signed_checkpoints(report)
    size = log_size()
    report.size = size
    report.checkpoint_size = checkpoints[-1][0] if checkpoints else 0
    problems: list[Any] = []

    def read(first: int, upto: int) -> Iterator[LogEntry]:
        return segments.log_entries(first, upto, problems)

    tips: dict[tuple[str, str], str] = {}
    purged = segments.purged_before()
    purged_before = max(purged, start)
    whole = purged_before == purged  # the pass reads all that is left
    if start:
        reconcile = False
    # After a retention purge (or from an incremental run's start) the tree resumes from
    # the stored nodes of the prefix.
    compact = tlog.CompactRange.from_nodes(purged_before, stored_nodes)
    pending = [(s, root) for s, root in checkpoints if s >= purged_before]
    pending.reverse()
    chunks = [(first, min(size, first + CHUNK)) for first in range(purged_before, size, CHUNK)]
    reported: set[int] = set()
    purges: dict[str, list[tuple[int, Any]]] = {}
    for (start, upto), (entries_read, stored_leaves) in zip(
        chunks, _read_ahead(chunks, read), strict=True
    ):
        # A segment that could not be read is named before the breaks of its entries.
        _report_segments(problems, reported, report)
        unresolved: list[tuple[tuple[str, str], str, int]] = []
        got = {entry.index: entry for entry in entries_read}
        old_live_read += sum(
            1
            for entry in entries_read
            if entry.columns is not None and entry.columns[7] < cutoff_text
        )
        leaves = []
        for index in range(start, upto):
            found = got.get(index)
            if found is None:
                report.add(Break("entry_missing", index=index, detail="no live row, no segment"))
                leaves.append(stored_leaves.get(index, bytes(32)))
                continue
            leaves.append(
                _check_entry(found, tips, stored_leaves, report, purged_before, unresolved, purges)
            )
        _resolve_links(unresolved, report, purged)
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
    _report_segments(problems, reported, report)
    _check_purges(report, purges, whole=whole)
    _check_sealed(report, size)
    _check_sequenced(report, cutoff, old_live_read)
    if reconcile:
        reconcile_rows(report, tips)
    return report


def _report_segments(problems: list[Any], reported: set[int], report: VerificationReport) -> None:
    """A break for each unreadable segment not reported yet (once per segment: a segment
    read for two chunks is one problem). The reader may be appending (the read-ahead
    thread): a copy is walked."""
    for problem in sorted(list(problems), key=lambda p: p.segment.first_index):
        if problem.segment.id in reported:
            continue
        reported.add(problem.segment.id)
        report.add(Break(problem.kind, index=problem.segment.first_index, detail=str(problem)))


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


def _stored_leaves(start: int, upto: int) -> dict[int, bytes]:
    rows = LogNode.objects.filter(key__gte=start, key__lt=upto).values_list("key", "hash")
    return {key: bytes(digest) for key, digest in rows}


def _check_entry(
    entry: LogEntry,
    tips: dict[tuple[str, str], str],
    stored_leaves: dict[int, bytes],
    report: VerificationReport,
    purged_before: int,
    unresolved: list[tuple[tuple[str, str], str, int]],
    purges: dict[str, list[tuple[int, Any]]],
) -> bytes:
    try:
        parsed = orjson.loads(entry.body)
        key = (parsed["object_type"], parsed["object_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        parsed, key = None, ("", "")
    object_type, object_id = key
    digest = entry.hash
    hashed = parsed is not None and trail.entry_hash(entry.prev_hash, entry.body) == entry.hash
    if hashed and object_type == PURGE_TYPE and parsed.get("event_type") == PURGE_EVENT:
        purges.setdefault(object_id, []).append((entry.index, parsed.get("new")))
    if not hashed:
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
    unresolved: list[tuple[tuple[str, str], str, int]], report: VerificationReport, purged: int
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
    archived: bool | None = None  # asked once, and only if a link needs it
    for key, prev, index in unresolved:
        owner = found.get(prev)
        if owner == key:
            continue
        if owner is None and index >= purged:
            if archived is None:
                archived = _archived_prefix_exists()
            if archived:
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


def _check_purges(
    report: VerificationReport, purges: dict[str, list[tuple[int, Any]]], *, whole: bool
) -> None:
    """Every retention record against the log's entry that recorded the purge
    (``audit.retention_purged``, written in the record's transaction: its ``new`` names
    the range, the segments and the row count). The records are rows a DBA can rewrite;
    the entry is in the signed log. Breaks are ``purge_record_mismatch``:

    - the records do not cover ``0..last`` contiguously (a gap, an overlap, a range
      widened into the next record's);
    - a record differs from an entry recording it (entries whose hash does not check are
      no evidence: ``hash_mismatch`` names them);
    - the latest record (the one the purged prefix is taken from) has no entry. Its entry
      was appended after the purged range, so it is in what the pass read — or live and
      not sequenced yet. An earlier record's entry may itself have been purged since (by a
      later purge, whose own entry is then checked), so it is not required. An
      incremental run (``whole`` False) does not read the log before its start and only
      compares the entries it finds."""
    records = list(RetentionPurge.objects.order_by("first_index", "id"))
    expected_first = 0
    for position, record in enumerate(records):
        name = f"retention record {record.id} ({record.first_index}..{record.last_index})"
        if record.first_index != expected_first or record.last_index < record.first_index:
            report.add(
                _purge_break(
                    record,
                    None,
                    f"{name}: the records do not cover the purged prefix one after the other "
                    f"(expected a range from {expected_first})",
                )
            )
        expected_first = max(expected_first, record.last_index + 1)
        found = purges.get(str(record.id)) or _live_purge_entries(record.id)
        if not found:
            if whole and position == len(records) - 1:
                report.add(
                    _purge_break(
                        record, None, f"{name}: no entry of the log (that checks) records it"
                    )
                )
            continue
        recorded = _purge_values(record)
        for index, new in found:
            logged = _purge_values_logged(new)
            if logged != recorded:
                differ = sorted(key for key in recorded if logged.get(key) != recorded[key])
                report.add(
                    _purge_break(
                        record,
                        index,
                        f"{name}: differs from the entry that recorded the purge "
                        f"({', '.join(differ)})",
                    )
                )


def _purge_break(record: RetentionPurge, index: int | None, detail: str) -> Break:
    return Break("purge_record_mismatch", PURGE_TYPE, str(record.id), index, detail)


def _purge_values(record: RetentionPurge) -> dict[str, Any]:
    """A record's content as its entry holds it (canonical values: integers as text)."""
    return trail.canonical_values(
        {
            "first_index": record.first_index,
            "last_index": record.last_index,
            "rows": record.row_count,
            "segments": record.detail,
            "segment_count": record.segment_count,
        }
    )


def _purge_values_logged(new: Any) -> dict[str, Any]:
    if not isinstance(new, dict):
        return {}
    values = {key: new.get(key) for key in ("first_index", "last_index", "rows", "segments")}
    segments_logged = new.get("segments")
    values["segment_count"] = (
        str(len(segments_logged)) if isinstance(segments_logged, list) else None
    )
    return values


def _live_purge_entries(purge_id: int) -> list[tuple[int | None, Any]]:
    """The purge's entries among the live rows (one the pass did not read: not sequenced
    yet, or before an incremental run's start), those whose hash checks."""
    found = []
    rows = AuditEntry.objects.filter(
        object_type=PURGE_TYPE, object_id=str(purge_id), event_type=PURGE_EVENT
    ).values_list("id", "prev_hash", "hash", "body")
    for entry_id, prev_hash, digest, body in rows:
        body = bytes(body)
        if trail.entry_hash(prev_hash, body) != digest:
            continue
        try:
            new = orjson.loads(body).get("new")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        index = LogLeaf.objects.filter(entry_id=entry_id).values_list("index", flat=True).first()
        found.append((index, new))
    return found


def _check_sealed(report: VerificationReport, size: int) -> None:
    if size <= report.checkpoint_size:
        return
    lag = datetime.timedelta(seconds=settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS)
    entry = first_unsealed_entry(report.checkpoint_size)
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


def _check_sequenced(
    report: VerificationReport, cutoff: datetime.datetime, old_live_read: int
) -> None:
    """``unsequenced`` breaks: live entries older than ``cutoff`` that are not in the log.

    When the table holds as many such entries as the pass read live from the log
    (``old_live_read``), each of them is in the log: one count on the ``created_at``
    index. Only otherwise (an entry not sequenced, an incremental run that read part of
    the log, entries sequenced or archived while the pass ran) are they looked for, with
    the anti-join that reads every live entry (seconds per million)."""
    if AuditEntry.objects.filter(created_at__lt=cutoff).count() == old_live_read:
        return
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
