"""Archive segment files, and reading a lane as one chain across segments and live rows.

Segment file, format ``payflow-audit-segment/1``: gzip (header mtime 0, so the same rows
always give the same bytes) of UTF-8 JSON lines, each line one JSON object with keys sorted:

- line 1, the header: ``{"first_prev_hash", "first_seq", "format", "last_hash", "last_seq",
  "lane", "row_count"}`` (numbers as JSON integers);
- then one line per row, in seq order: ``{"canonical": "<the row's canonical encoding, as a
  JSON string>", "hash": "<64 hex>", "prev_hash": "<64 hex>", "seq": <int>}``.

A row checks when ``hash = SHA-256(b"payflow-audit-entry/1\\x00" ‖ prev_hash ‖ canonical)``
(``audit.chain``), its canonical ``lane``/``seq`` are the header's lane and the line's seq,
seqs are contiguous from ``first_seq`` and each ``prev_hash`` is the previous row's hash. The
file's SHA-256 is recorded in the database (``ArchiveSegment.file_digest``) when the segment
is recorded, before the file is written, and checked on every read.

Problems with a segment file are named:

- ``segment_missing``: the file is not in the archive storage;
- ``segment_altered``: its digest differs and its rows do not check (a byte flipped,
  truncated, unreadable);
- ``segment_replaced``: its digest differs but its rows check: a re-computed file;
- ``segment_mismatch``: the file checks but disagrees with its database record (range,
  first prev_hash, last hash or row count).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from audit.chain import CANONICAL_FIELDS, canonical_bytes, entry_hash
from audit.models import GENESIS_HASH, ArchiveSegment, AuditEntry

FORMAT = "payflow-audit-segment/1"
LIVE_CHUNK = 2000


def storage() -> Storage:
    """The archive storage (``STORAGES["audit_archive"]``): a directory or an S3 bucket."""
    return storages["audit_archive"]


def segment_path(lane: int, first_seq: int, last_seq: int) -> str:
    return f"lane-{lane:03d}/{first_seq:012d}-{last_seq:012d}.jsonl.gz"


class ChainRow:
    """One row of a lane, from a segment file or the live table (``fields``: the row's
    canonical fields as read from the database). The canonical encoding of a live row is
    computed when first asked for."""

    __slots__ = ("_canonical", "fields", "hash", "lane", "prev_hash", "seq")

    def __init__(
        self,
        lane: int,
        seq: int,
        prev_hash: str,
        hash: str,
        canonical: bytes | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.lane, self.seq, self.prev_hash, self.hash = lane, seq, prev_hash, hash
        self._canonical, self.fields = canonical, fields

    @property
    def created_at(self) -> Any:
        """When a live row was written (rows from a segment file carry only their bytes)."""
        if self.fields is None:
            raise ValueError("a row read from a segment file has no fields")
        return self.fields["created_at"]

    @property
    def canonical(self) -> bytes:
        if self._canonical is None:
            if self.fields is None:
                raise ValueError("a row read from a segment file has its bytes already")
            self._canonical = canonical_bytes(self.fields)
        return self._canonical

    def hash_ok(self) -> bool:
        return entry_hash(self.prev_hash, self.canonical) == self.hash

    def written_seq(self) -> int | None:
        """If the row's contents hash correctly at another seq than where it stands now, it
        was moved there (rows inserted before it, or swapped), not edited."""
        if self.fields is None:
            try:
                written = int(json.loads(self.canonical)["seq"])
            except (ValueError, KeyError, TypeError):
                return None
            return written if written != self.seq and self.hash_ok() else None
        fields = dict(self.fields)
        for delta in (-1, 1, -2, 2, -3, 3):
            if self.seq + delta >= 1:
                fields["seq"] = self.seq + delta
                if entry_hash(self.prev_hash, canonical_bytes(fields)) == self.hash:
                    return self.seq + delta
        return None


class SegmentProblem(Exception):
    """A segment file that cannot be trusted; ``kind`` is one of the module's names."""

    def __init__(self, segment: ArchiveSegment, kind: str, detail: str) -> None:
        super().__init__(f"segment {segment} ({segment.storage_path}): {kind}: {detail}")
        self.segment, self.kind, self.detail = segment, kind, detail


# --- writing ----------------------------------------------------------------------------


@dataclass
class SegmentFile:
    lane: int
    first_seq: int
    last_seq: int
    first_prev_hash: str
    last_hash: str
    row_count: int
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_segment(lane: int, rows: list[ChainRow]) -> SegmentFile:
    """The file for consecutive rows of one lane (deterministic: same rows, same bytes)."""
    header = {
        "format": FORMAT,
        "lane": lane,
        "first_seq": rows[0].seq,
        "last_seq": rows[-1].seq,
        "first_prev_hash": rows[0].prev_hash,
        "last_hash": rows[-1].hash,
        "row_count": len(rows),
    }
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb", mtime=0, compresslevel=6) as out:
        out.write(_line(header) + b"\n")
        for row in rows:
            line = {
                "seq": row.seq,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
                "canonical": row.canonical.decode(),
            }
            out.write(_line(line) + b"\n")
    return SegmentFile(
        lane=lane,
        first_seq=rows[0].seq,
        last_seq=rows[-1].seq,
        first_prev_hash=rows[0].prev_hash,
        last_hash=rows[-1].hash,
        row_count=len(rows),
        data=body.getvalue(),
    )


def write_segment_file(segment: ArchiveSegment, data: bytes) -> None:
    """Put the file in storage unless an identical one is there already (a rerun after a
    crash). A different file under the name (a partial write) is replaced. Called outside
    any database transaction: object storage is a network call."""
    store = storage()
    if store.exists(segment.storage_path):
        with store.open(segment.storage_path, "rb") as existing:
            if hashlib.sha256(existing.read()).hexdigest() == segment.file_digest:
                return
        store.delete(segment.storage_path)
    saved = store.save(segment.storage_path, ContentFile(data))
    if saved != segment.storage_path:
        raise OSError(f"the storage saved {segment.storage_path} as {saved}")


# --- reading ----------------------------------------------------------------------------


def _parse(data: bytes) -> tuple[dict[str, Any], list[ChainRow]]:
    """Header and rows of a file, or ValueError when it is not a readable segment."""
    try:
        lines = gzip.decompress(data).split(b"\n")
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise ValueError(f"not a readable gzip file ({exc})") from exc
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        header = json.loads(lines[0])
        if header.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        lane = int(header["lane"])
        rows = []
        for raw in lines[1:]:
            line = json.loads(raw)
            rows.append(
                ChainRow(
                    lane=lane,
                    seq=int(line["seq"]),
                    prev_hash=str(line["prev_hash"]),
                    hash=str(line["hash"]),
                    canonical=str(line["canonical"]).encode(),
                )
            )
    except (IndexError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed segment line ({exc})") from exc
    return header, rows


def chain_problem(rows: Iterable[ChainRow], first_seq: int, first_prev: str) -> str:
    """The first reason these rows are not a chain from (first_seq, first_prev), or ''."""
    seq, prev = first_seq, first_prev
    for row in rows:
        if row.seq != seq:
            return f"expected seq {seq}, found {row.seq}"
        if not row.hash_ok():
            return f"seq {row.seq}: the row does not match its hash"
        if row.prev_hash != prev:
            return f"seq {row.seq}: prev_hash does not link to the previous row"
        seq, prev = seq + 1, row.hash
    return ""


def read_segment(segment: ArchiveSegment) -> list[ChainRow]:
    """The rows of a segment's file, after checking the file against its record. Raises
    ``SegmentProblem`` naming what is wrong. Row-level checks (hash, links, anchors) are
    the caller's: verification names those breaks like breaks of live rows."""
    store = storage()
    try:
        with store.open(segment.storage_path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise SegmentProblem(segment, "segment_missing", "the file is not in the archive") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        header, rows = _parse(data)
        problem = chain_problem(rows, int(header["first_seq"]), str(header["first_prev_hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        header, rows, problem = {}, [], str(exc)
    if digest != segment.file_digest:
        if rows and not problem:
            raise SegmentProblem(
                segment,
                "segment_replaced",
                f"digest {digest[:16]}… is not the recorded {segment.file_digest[:16]}…, "
                "yet its rows chain: a re-computed file",
            )
        raise SegmentProblem(
            segment,
            "segment_altered",
            f"digest {digest[:16]}… is not the recorded {segment.file_digest[:16]}…"
            + (f" ({problem})" if problem else ""),
        )
    recorded = {
        "lane": segment.lane,
        "first_seq": segment.first_seq,
        "last_seq": segment.last_seq,
        "first_prev_hash": segment.first_prev_hash,
        "last_hash": segment.last_hash,
        "row_count": segment.row_count,
    }
    for key, value in recorded.items():
        if header.get(key) != value:
            raise SegmentProblem(
                segment, "segment_mismatch", f"{key} is {header.get(key)!r}, recorded {value!r}"
            )
    if len(rows) != segment.row_count:
        raise SegmentProblem(
            segment, "segment_mismatch", f"{len(rows)} rows, recorded {segment.row_count}"
        )
    return rows


def check_segment(segment: ArchiveSegment, *, previous_hash: str | None = None) -> str:
    """Check one segment on its own: the file against its record, every row hash and link,
    and (if given) the link to the previous segment's last hash. '' when it holds, else the
    problem, starting with its kind."""
    try:
        rows = read_segment(segment)
    except SegmentProblem as problem:
        return f"{problem.kind}: {problem.detail}"
    return rows_problem(segment, rows, previous_hash=previous_hash)


def rows_problem(
    segment: ArchiveSegment, rows: list[ChainRow], *, previous_hash: str | None = None
) -> str:
    """The chain checks of ``check_segment`` on rows already read from the file."""
    start = segment.first_prev_hash if previous_hash is None else previous_hash
    problem = chain_problem(rows, segment.first_seq, start)
    if problem:
        return f"chain: {problem}"
    for row in rows:
        written = json.loads(row.canonical)
        if (written.get("lane"), written.get("seq")) != (str(segment.lane), str(row.seq)):
            return (
                f"chain: seq {row.seq} was written as lane {written.get('lane')} "
                f"seq {written.get('seq')}"
            )
    return ""


def previous_segment_hash(segment: ArchiveSegment) -> str:
    """The hash the segment's first row must link to: the previous segment's last hash, or
    the genesis for a lane's first row (after a retention purge the earlier segment is
    still recorded, as purged)."""
    if segment.first_seq == 1:
        return GENESIS_HASH
    before = ArchiveSegment.objects.filter(lane=segment.lane, last_seq=segment.first_seq - 1)
    previous = before.values_list("last_hash", flat=True).first()
    return previous if previous is not None else segment.first_prev_hash


# --- one chain per lane -----------------------------------------------------------------


def readable_segments(lane: int, after_seq: int = 0) -> list[ArchiveSegment]:
    """The lane's verified, unpurged segments that hold rows after ``after_seq``."""
    return list(
        ArchiveSegment.objects.filter(
            lane=lane, verified_at__isnull=False, purged_at__isnull=True, last_seq__gt=after_seq
        ).order_by("first_seq")
    )


def _archived(
    lane: int, after_seq: int, upto_seq: int | None, pick: Callable[[ChainRow], Any]
) -> Generator[Any, None, int | None]:
    """``pick(row)`` for the lane's archived rows in range; returns the seq the archive ends
    at, or None when ``upto_seq`` was reached inside it (nothing live to read then)."""
    archived_upto = after_seq
    for segment in readable_segments(lane, after_seq):
        if upto_seq is not None and segment.first_seq > upto_seq:
            return None
        for row in read_segment(segment):
            if row.seq > after_seq and (upto_seq is None or row.seq <= upto_seq):
                yield pick(row)
        archived_upto = max(archived_upto, segment.last_seq)
    return archived_upto


def lane_rows(lane: int, after_seq: int = 0, upto_seq: int | None = None) -> Iterator[ChainRow]:
    """The lane's rows after ``after_seq`` (up to ``upto_seq``) in seq order: from verified
    segment files first, then from the live table. Raises ``SegmentProblem`` when a file
    needed cannot be trusted. A gap (rows neither archived nor live) shows as a jump in seq,
    which verification reports as ``row_missing``."""
    archived_upto = yield from _archived(lane, after_seq, upto_seq, lambda row: row)
    if archived_upto is not None:
        yield from live_rows(lane, archived_upto, upto_seq)


def live_rows(lane: int, after_seq: int, upto_seq: int | None = None) -> Iterator[ChainRow]:
    """Live rows of a lane after ``after_seq``, read in chunks (memory stays bounded) as
    tuples of the canonical fields and the two hashes, not model instances (verification
    reads every row: building a model per row was an eighth of its time)."""
    columns = (*CANONICAL_FIELDS, "prev_hash", "hash")
    width = len(CANONICAL_FIELDS)
    while True:
        query = AuditEntry.objects.filter(lane=lane, seq__gt=after_seq)
        if upto_seq is not None:
            query = query.filter(seq__lte=upto_seq)
        chunk = list(query.order_by("seq").values_list(*columns)[:LIVE_CHUNK])
        for values in chunk:
            fields = dict(zip(CANONICAL_FIELDS, values[:width], strict=True))
            yield ChainRow(lane, fields["seq"], values[width], values[width + 1], fields=fields)
        if len(chunk) < LIVE_CHUNK:
            return
        after_seq = chunk[-1][CANONICAL_FIELDS.index("seq")]


def lane_hashes(
    lane: int, after_seq: int = 0, upto_seq: int | None = None
) -> Iterator[tuple[int, str]]:
    """(seq, hash) of the lane's rows after ``after_seq``, like ``lane_rows`` but reading
    only those two columns of live rows (Merkle leaves of checkpoints and proofs)."""
    archived_upto = yield from _archived(lane, after_seq, upto_seq, lambda r: (r.seq, r.hash))
    if archived_upto is None:
        return
    query = AuditEntry.objects.filter(lane=lane, seq__gt=archived_upto)
    if upto_seq is not None:
        query = query.filter(seq__lte=upto_seq)
    yield from query.order_by("seq").values_list("seq", "hash").iterator(chunk_size=5000)
