"""Archive segment files, and reading the log as one sequence across segments and live rows.

Segment file, format ``payflow-audit-segment/2`` (``docs/audit-formats.md`` §7): gzip (header
mtime 0, so the same entries always give the same bytes) of UTF-8 JSON lines with keys sorted
and no whitespace. Line 1 is the header ``{"count", "first_index", "format", "last_index"}``;
then one line per leaf, ``{"body": "<b64 canonical bytes>", "hash", "index", "prev_hash"}``,
for every index ``first_index..last_index`` in order. The file's SHA-256 is recorded
(``ArchiveSegment.file_digest``) before the file is written and checked on every read.

A file that cannot be trusted is ``segment_missing`` (not in storage) or ``segment_altered``
(digest, gzip, JSON, range or count wrong): ``SegmentProblem``, never another exception.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import connection
from django.db.models import Max

from audit.models import ArchiveSegment, RetentionPurge
from audit.report import LogEntry
from payflow.platform import trail

FORMAT = "payflow-audit-segment/2"


def storage() -> Storage:
    """The archive storage (``STORAGES["audit_archive"]``): a directory or an S3 bucket."""
    return storages["audit_archive"]


def segment_path(first_index: int, last_index: int) -> str:
    return f"log/{first_index:015d}-{last_index:015d}.jsonl.gz"


class SegmentProblem(Exception):
    """A segment file that cannot be trusted; ``kind`` is ``segment_missing`` or
    ``segment_altered``."""

    def __init__(self, segment: ArchiveSegment, kind: str, detail: str) -> None:
        super().__init__(f"segment {segment} ({segment.storage_path}): {kind}: {detail}")
        self.segment, self.kind, self.detail = segment, kind, detail


def _line(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode() + b"\n"


@dataclass
class SegmentFile:
    first_index: int
    last_index: int
    count: int
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def build_segment(entries: list[LogEntry]) -> SegmentFile:
    """The file for contiguous leaves ``entries`` (in index order)."""
    first, last = entries[0].index, entries[-1].index
    if [entry.index for entry in entries] != list(range(first, last + 1)):
        raise ValueError("a segment holds a contiguous range of the log")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as out:
        out.write(
            _line(
                {"count": len(entries), "first_index": first, "format": FORMAT, "last_index": last}
            )
        )
        for entry in entries:
            out.write(
                _line(
                    {
                        "body": base64.b64encode(entry.body).decode(),
                        "hash": entry.hash,
                        "index": entry.index,
                        "prev_hash": entry.prev_hash,
                    }
                )
            )
    return SegmentFile(first, last, len(entries), buffer.getvalue())


def write_segment_file(segment: ArchiveSegment, data: bytes) -> None:
    """Put the file in storage unless an identical one is there already (a rerun after a
    crash); a different file under the name (a partial write) is replaced. Outside any
    database transaction: object storage is a network call."""
    store = storage()
    if store.exists(segment.storage_path):
        with store.open(segment.storage_path, "rb") as existing:
            if hashlib.sha256(existing.read()).hexdigest() == segment.file_digest:
                return
        store.delete(segment.storage_path)
    saved = store.save(segment.storage_path, ContentFile(data))
    if saved != segment.storage_path:
        raise OSError(f"the storage saved {segment.storage_path} as {saved}")


def parse_segment(data: bytes, first_index: int, last_index: int) -> list[LogEntry]:
    """The entries of a segment file holding exactly ``first_index..last_index``, or
    ``ValueError`` saying why not (any corruption: gzip, JSON, types, range)."""
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a readable gzip file ({exc})") from None
    lines = text.split(b"\n")
    if not lines or lines[-1] != b"":
        raise ValueError("the file does not end with a complete line")
    lines.pop()
    try:
        header = json.loads(lines[0])
        if header != {
            "count": last_index - first_index + 1,
            "first_index": first_index,
            "format": FORMAT,
            "last_index": last_index,
        }:
            raise ValueError("the header is not this segment's")
        entries = []
        for expected, raw in zip(range(first_index, last_index + 1), lines[1:], strict=True):
            line = json.loads(raw)
            if line["index"] != expected or not isinstance(line["hash"], str):
                raise ValueError(f"line for index {expected} is not in place")
            if not isinstance(line["prev_hash"], str) or len(line["prev_hash"]) != 64:
                raise ValueError(f"index {expected}: bad prev_hash")
            entries.append(
                LogEntry(
                    index=expected,
                    prev_hash=line["prev_hash"],
                    hash=line["hash"],
                    body=base64.b64decode(line["body"], validate=True),
                )
            )
    except (
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        UnicodeDecodeError,
        binascii.Error,
    ) as exc:
        raise ValueError(f"malformed segment ({exc})") from None
    return entries


def read_segment(segment: ArchiveSegment) -> list[LogEntry]:
    """The entries of a segment's file, after checking it against its record; raises
    ``SegmentProblem``. Entry-level checks are verification's, like for live rows."""
    try:
        with storage().open(segment.storage_path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise SegmentProblem(segment, "segment_missing", "the file is not in the archive") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != segment.file_digest:
        raise SegmentProblem(
            segment,
            "segment_altered",
            f"digest {digest[:16]}… is not the recorded {segment.file_digest[:16]}…",
        )
    try:
        return parse_segment(data, segment.first_index, segment.last_index)
    except ValueError as exc:
        raise SegmentProblem(segment, "segment_altered", str(exc)) from None


def check_segment(segment: ArchiveSegment) -> str:
    """'' when the segment's file checks (record, digest, format, every entry's hash),
    else the problem, starting with its kind."""
    try:
        entries = read_segment(segment)
    except SegmentProblem as problem:
        return f"{problem.kind}: {problem.detail}"
    for entry in entries:
        if trail.entry_hash(entry.prev_hash, entry.body) != entry.hash:
            return f"segment_altered: index {entry.index} does not match its hash"
    return ""


def purged_before() -> int:
    """The first index not removed by retention (0 when nothing was purged): from the
    retention records (append-only), not the segments' ``purged_at`` (a flag the archiver's
    database user may set: marking a segment purged without a record must leave a gap)."""
    top = RetentionPurge.objects.aggregate(top=Max("last_index"))
    return 0 if top["top"] is None else top["top"] + 1


def live_entries(start: int, upto: int, *, times: bool = True) -> Iterator[LogEntry]:
    """The live entries of leaves ``start..upto-1`` (those not archived), in index order,
    with their indexed columns (``created_at`` formatted as in the body), in one query;
    ``times=False`` leaves ``created_at`` unset (verification only needs the columns)."""
    mysql = connection.vendor == "mysql"
    created = (
        "DATE_FORMAT(e.created_at, '%%Y-%%m-%%dT%%H:%%i:%%s.%%f+00:00')"
        if mysql
        else "e.created_at"
    )
    # No input in the text: fixed column expressions; the range is bound. STRAIGHT_JOIN:
    # leaves first, by their primary key, so the rows come in index order with no sort.
    # (Seen here once: MariaDB 10.11.19 crashed with signal 11 freeing an Aria temporary
    # table of this query, ha_maria::drop_table under JOIN::cleanup.)
    sql = (
        "SELECT STRAIGHT_JOIN l.`index`, e.prev_hash, e.hash, e.body, e.object_type,"  # noqa: S608
        " e.object_id, e.action,"
        f" e.event_type, e.request_id, e.actor_type, e.actor_id, {created},"
        f" {'e.created_at' if times or not mysql else 'NULL'}"
        " FROM audit_logleaf l JOIN audit_auditentry e ON e.id = l.entry_id"
        " WHERE l.`index` >= %s AND l.`index` < %s ORDER BY l.`index`"
    )
    if not mysql:
        sql = sql.replace("`", '"').replace("STRAIGHT_JOIN ", "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [start, upto])
        rows = cursor.fetchall()
    utc = datetime.UTC
    for row in rows:
        when = row[12]
        if isinstance(when, str):  # SQLite hands back text
            when = datetime.datetime.fromisoformat(when)
        if when is not None:
            when = when.replace(tzinfo=utc)
        yield LogEntry(
            index=row[0],
            prev_hash=row[1],
            hash=row[2],
            body=bytes(row[3]),
            columns=(*row[4:11], row[11] if mysql else trail.format_time(when)),
            created_at=when,
        )


def log_entries(
    start: int, upto: int, problems: list[SegmentProblem] | None = None
) -> Iterator[LogEntry]:
    """Leaves ``start..upto-1`` as one sequence: live entries, and the archived ones from
    their segment files. An unreadable segment is added to ``problems`` (its entries are
    then missing, which verification reports too).

    A verified segment whose live entries are being deleted (an archiver at work, or one
    killed half-way) counts too: the entries already deleted are read from its file, so the
    log is whole at every moment (the DELETE trigger admits only entries a verified segment
    covers)."""
    seen: set[int] = set()
    for entry in live_entries(start, upto, times=False):
        seen.add(entry.index)
        yield entry
    segments = ArchiveSegment.objects.filter(
        verified_at__isnull=False,
        purged_at__isnull=True,
        first_index__lt=upto,
        last_index__gte=start,
    ).order_by("first_index")
    for segment in segments:
        covered = range(max(start, segment.first_index), min(upto, segment.last_index + 1))
        if segment.rows_deleted_at is None and all(index in seen for index in covered):
            continue  # nothing of it deleted yet: its live entries are the log
        try:
            entries = read_segment(segment)
        except SegmentProblem as problem:
            if problems is not None:
                problems.append(problem)
            continue
        for entry in entries:
            if start <= entry.index < upto and entry.index not in seen:
                yield entry
