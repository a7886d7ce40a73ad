"""Evidence bundles (``payflow-audit-bundle/2``, ``docs/audit-formats.md`` §5).

An auditor asks for the entries of one object, of one merchant, or of a time range; the
bundle holds each entry's canonical bytes with an inclusion proof to one signed checkpoint
(with its witness cosignatures), and — given a checkpoint the auditor already trusts — the
consistency proof from it. ``tools/verify_evidence.py`` checks a bundle offline with the
log's public key alone.
"""

from __future__ import annotations

import base64
import csv
import datetime
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q

from audit import timeline, tlog
from audit.logviews import note_with_cosignatures
from audit.models import AuditEntry, Checkpoint, LogLeaf
from audit.objects import history_types, public_ids
from audit.sequencer import stored_nodes
from payflow.platform import personal, spreadsheets, trail

logger = logging.getLogger(__name__)

FORMAT = "payflow-audit-bundle/2"
MAX_ENTRIES = 1_000_000  # streamed a chunk at a time; beyond this, narrow the selection
CHUNK = 1000


class NothingToExport(ValueError):
    """The selection holds no entry sealed by a checkpoint yet, or too many (409)."""


class ExportBroken(RuntimeError):
    """An export could not be finished once it had begun streaming."""


#: How a streamed export that could not be finished ends.
FAILED = "EXPORT FAILED"


class UnreadableExport(NothingToExport):
    """The request cannot be read: a malformed id, time, format or trusted note (400)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def select_entries(
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    merchant_id: str | None = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
) -> Any:
    """The entries an export covers: one object's (with the operators' actions on it), a
    merchant's (the merchant itself and
    every entry whose values name it), or a time range's; combinable."""
    query = AuditEntry.objects.all()
    if object_type and object_id:
        query = query.filter(object_type__in=history_types(object_type), object_id=object_id)
    if merchant_id:
        needle = json.dumps(str(merchant_id))
        query = query.filter(
            Q(object_type="ledger.merchant", object_id=str(merchant_id))
            | Q(body__contains=f'"merchant":{needle}')
        )
    if since:
        query = query.filter(created_at__gte=since)
    if until:
        query = query.filter(created_at__lt=until)
    return query


@dataclass
class Export:
    """A selection checked and counted, ready to stream as a bundle or as CSV.

    Entries come in log order, ``CHUNK`` at a time (one query for the leaves, one for the
    entries, one for the proofs' nodes per chunk), so a large range is never held whole."""

    checkpoint: Checkpoint
    selected: Any  # the AuditEntry queryset of the selection
    count: int  # entries of the selection sealed by the checkpoint
    complete_object: tuple[str, str] | None
    consistency: dict[str, Any] | None

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def sealed_chunks(self) -> Iterator[list[tuple[int, str, str, bytes, list[bytes]]]]:
        """(index, prev_hash, hash, body, inclusion proof) of every sealed entry of the
        selection, in log order, a chunk at a time. ``ExportBroken`` when the selection
        changed while it was read (entries archived meanwhile: fewer than counted) or the
        tree lacks a node a proof needs."""
        after, streamed = -1, 0
        while True:
            leaves = list(
                LogLeaf.objects.filter(
                    index__lt=self.size, index__gt=after, entry_id__in=self.selected.values("id")
                )
                .order_by("index")
                .values_list("index", "entry_id")[:CHUNK]
            )
            if not leaves:
                if streamed != self.count:
                    raise ExportBroken(
                        f"{streamed} of the {self.count} entries counted could be read: "
                        "some left the live table meanwhile (archived); export again"
                    )
                return
            rows = {
                pk: (prev_hash, digest, bytes(body))
                for pk, prev_hash, digest, body in AuditEntry.objects.filter(
                    pk__in=[entry_id for _, entry_id in leaves]
                ).values_list("id", "prev_hash", "hash", "body")
            }
            if len(rows) != len(leaves):
                raise ExportBroken("entries left the live table while they were read; export again")
            try:
                proofs = tlog.inclusion_proofs(
                    [index for index, _ in leaves], self.size, stored_nodes
                )
            except LookupError:
                raise ExportBroken(
                    "the stored tree lacks nodes the inclusion proofs need: the tree was "
                    "damaged (run a verification)"
                ) from None
            yield [
                (index, *rows[entry_id], proof)
                for (index, entry_id), proof in zip(leaves, proofs, strict=True)
            ]
            streamed += len(leaves)
            after = leaves[-1][0]

    def bundle_chunks(self) -> Iterator[str]:
        """The bundle (§5) as JSON text, one entry per line. Should the selection change or
        the tree fail while it streams (the response has begun), the text ends with an
        ``EXPORT FAILED`` line instead of the closing bracket: no verifier takes it for a
        bundle, and a person reading it sees why."""
        try:
            yield from self._bundle_text()
        except ExportBroken as broken:
            logger.warning("evidence export broken: %s", broken)
            yield f"\n{FAILED}: {broken}\n"

    def _bundle_text(self) -> Iterator[str]:
        head: dict[str, Any] = {
            "format": FORMAT,
            "origin": settings.AUDIT_LOG_ORIGIN,
            "checkpoint": note_with_cosignatures(self.checkpoint),
            "tree_size": self.size,
        }
        if self.complete_object is not None:
            head["complete_objects"] = [list(self.complete_object)]
        if self.consistency is not None:
            head["consistency"] = self.consistency
        yield json.dumps(head)[:-1] + ', "entries": [\n'
        first = True
        for chunk in self.sealed_chunks():
            lines = []
            for index, prev_hash, digest, body, proof in chunk:
                entry = {
                    "index": index,
                    "prev_hash": prev_hash,
                    "hash": digest,
                    "body": _b64(body),
                    "entry": json.loads(body),
                    "inclusion": [_b64(node) for node in proof],
                }
                lines.append(("  " if first else ", ") + json.dumps(entry, ensure_ascii=False))
                first = False
            yield "\n".join(lines) + "\n"
        yield "]}\n"

    def bundle(self) -> dict[str, Any]:
        return json.loads("".join(self.bundle_chunks()))

    def csv_chunks(self) -> Iterator[str]:
        """The same entries as CSV for spreadsheets: one row each, personal data opened
        (``[erased]`` once erased), what each changed as ``field: old → new`` in major
        units, and the hashes and canonical bytes for cross-checking with the bundle. A
        failure while it streams ends it with an ``EXPORT FAILED`` row saying why."""
        try:
            yield from self._csv_text()
        except ExportBroken as broken:
            logger.warning("evidence export broken: %s", broken)
            yield f"{FAILED},{json.dumps(str(broken))}\r\n"

    def _csv_text(self) -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for chunk in self.sealed_chunks():
            parsed = [json.loads(body) for _, _, _, body, _ in chunk]
            personal.prefetch_keys(_sealable(fields) for fields in parsed)
            names = public_ids([(fields["object_type"], fields["object_id"]) for fields in parsed])
            for (index, prev_hash, digest, body, _), fields in zip(chunk, parsed, strict=True):
                shown = personal.reveal_entry(fields)
                actor = shown["actor"]
                writer.writerow(
                    [
                        spreadsheets.cell(value)
                        for value in (
                            index,
                            shown["created_at"],
                            shown["event_type"],
                            shown["action"],
                            shown["object_type"],
                            shown["object_id"],
                            names[(fields["object_type"], fields["object_id"])],
                            actor.get("type", ""),
                            actor.get("id", ""),
                            actor.get("label", ""),
                            shown["reason"],
                            shown["request_id"],
                            shown["task_id"],
                            shown["ip"],
                            shown["user_agent"],
                            timeline.describe(shown["old"], shown["new"]),
                            digest,
                            prev_hash,
                            body.decode("utf-8"),
                        )
                    ]
                )
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()


def _sealable(fields: dict[str, Any]) -> dict[str, Any]:
    """The members of an entry that may hold sealed values, as one mapping (for
    ``personal.prefetch_keys``: every subject's key read at once)."""
    members = {name: fields.get(name) for name in ("ip", "reason", "user_agent")}
    members["actor"] = fields["actor"].get("label")
    for side in ("old", "new"):
        members.update({f"{side}.{key}": value for key, value in (fields.get(side) or {}).items()})
    return members


CSV_COLUMNS = (
    "index", "created_at", "event_type", "action", "object_type", "object_id", "public_id",
    "actor_type", "actor_id", "actor_label", "reason", "request_id", "task_id", "ip",
    "user_agent", "changes", "hash", "prev_hash", "body",
)  # fmt: skip


def evidence_prepare(
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    merchant_id: str | None = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    trusted_size: int | None = None,
    trusted_root: bytes | None = None,
) -> Export:
    """A selection ready to stream (at most ``MAX_ENTRIES`` entries), proved against the
    latest checkpoint. ``NothingToExport`` (with the reason) when nothing of it is sealed
    yet, when it is too large, or when the trusted checkpoint does not fit."""
    checkpoint = Checkpoint.objects.order_by("-size").first()
    if checkpoint is None:
        raise NothingToExport("the log has no signed checkpoint yet")
    size = checkpoint.size
    selected = select_entries(
        object_type=object_type,
        object_id=object_id,
        merchant_id=merchant_id,
        since=since,
        until=until,
    )
    count = LogLeaf.objects.filter(index__lt=size, entry_id__in=selected.values("id")).count()
    if count > MAX_ENTRIES:
        raise NothingToExport(
            f"more than {MAX_ENTRIES} entries: narrow the selection (a shorter time range)"
        )
    if not count:
        raise NothingToExport("no entry of this selection is sealed by a checkpoint yet")
    complete = None
    if object_type and object_id and not (merchant_id or since or until):
        own = AuditEntry.objects.filter(object_type=object_type, object_id=object_id)
        if own.filter(prev_hash=trail.GENESIS_HASH).exists() and count == selected.count():
            complete = (object_type, object_id)
    consistency = None
    if trusted_size is not None and trusted_root is not None:
        if not 0 < trusted_size <= size:
            raise UnreadableExport(f"the trusted checkpoint's size must be 1..{size}")
        consistency = {
            "from_size": trusted_size,
            "from_root": _b64(trusted_root),
            "proof": [
                _b64(node) for node in tlog.consistency_proof(trusted_size, size, stored_nodes)
            ],
        }
    return Export(checkpoint, selected, count, complete, consistency)


def evidence_export(**selection: Any) -> dict[str, Any]:
    """The bundle of ``evidence_prepare(**selection)``, whole (as the pages stream it)."""
    return evidence_prepare(**selection).bundle()


def trusted_checkpoint(note_text: str) -> tuple[int, bytes]:
    """The (size, root) of a checkpoint note the auditor trusts, checked with the log's
    public key; ``NothingToExport`` with the reason otherwise."""
    try:
        signed = tlog.verify_note(note_text, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    except tlog.NoteError as exc:
        raise UnreadableExport(f"the trusted checkpoint does not verify: {exc}") from None
    return signed.size, signed.root
