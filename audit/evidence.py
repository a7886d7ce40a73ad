"""Evidence bundles (``payflow-audit-bundle/2``, ``docs/audit-formats.md`` §5).

An auditor asks for the entries of one object, of one merchant, or of a time range; the
bundle holds each entry's canonical bytes with an inclusion proof to one signed checkpoint
(with its witness cosignatures), and — given a checkpoint the auditor already trusts — the
consistency proof from it. ``tools/verify_evidence.py`` checks a bundle offline with the
log's public key alone.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from django.conf import settings
from django.db.models import Q

from audit import tlog
from audit.logviews import note_with_cosignatures
from audit.models import AuditEntry, Checkpoint, LogLeaf
from audit.objects import history_types
from audit.sequencer import stored_nodes
from payflow.platform import trail

FORMAT = "payflow-audit-bundle/2"
MAX_ENTRIES = 10_000


class NothingToExport(ValueError):
    """The selection holds no entry sealed by a checkpoint yet (or is not a valid one)."""


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


def evidence_export(
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    merchant_id: str | None = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    trusted_size: int | None = None,
    trusted_root: bytes | None = None,
) -> dict[str, Any]:
    """The bundle for a selection (at most ``MAX_ENTRIES`` entries, oldest first), proved
    against the latest checkpoint. ``NothingToExport`` when nothing is sealed yet."""
    checkpoint = Checkpoint.objects.order_by("-size").first()
    if checkpoint is None:
        raise NothingToExport("the log has no signed checkpoint yet")
    size = checkpoint.size
    rows = list(
        select_entries(
            object_type=object_type,
            object_id=object_id,
            merchant_id=merchant_id,
            since=since,
            until=until,
        )
        .order_by("id")
        .values_list("id", "prev_hash", "hash", "body", "object_type", "object_id")[
            : MAX_ENTRIES + 1
        ]
    )
    if len(rows) > MAX_ENTRIES:
        raise NothingToExport(
            f"more than {MAX_ENTRIES} entries: narrow the selection (a shorter time range)"
        )
    leaves = dict(
        LogLeaf.objects.filter(entry_id__in=[row[0] for row in rows], index__lt=size).values_list(
            "entry_id", "index"
        )
    )
    sealed = sorted((leaves[row[0]], row) for row in rows if row[0] in leaves)
    if not sealed:
        raise NothingToExport("no entry of this selection is sealed by a checkpoint yet")
    entries = []
    proofs = tlog.inclusion_proofs([index for index, _ in sealed], size, stored_nodes)
    for (index, (_, prev_hash, digest, body, _, _)), proof in zip(sealed, proofs, strict=True):
        body = bytes(body)
        entries.append(
            {
                "index": index,
                "prev_hash": prev_hash,
                "hash": digest,
                "body": _b64(body),
                "entry": json.loads(body),
                "inclusion": [_b64(node) for node in proof],
            }
        )
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "origin": settings.AUDIT_LOG_ORIGIN,
        "checkpoint": note_with_cosignatures(checkpoint),
        "tree_size": size,
        "entries": entries,
    }
    if object_type and object_id and not (merchant_id or since or until):
        first = AuditEntry.objects.filter(object_type=object_type, object_id=object_id)
        if first.filter(prev_hash=trail.GENESIS_HASH).exists() and len(sealed) == len(rows):
            bundle["complete_objects"] = [[object_type, object_id]]
    if trusted_size is not None and trusted_root is not None:
        if not 0 < trusted_size <= size:
            raise NothingToExport(f"the trusted checkpoint's size must be 1..{size}")
        bundle["consistency"] = {
            "from_size": trusted_size,
            "from_root": _b64(trusted_root),
            "proof": [
                _b64(node) for node in tlog.consistency_proof(trusted_size, size, stored_nodes)
            ],
        }
    return bundle


def trusted_checkpoint(note_text: str) -> tuple[int, bytes]:
    """The (size, root) of a checkpoint note the auditor trusts, checked with the log's
    public key; ``NothingToExport`` with the reason otherwise."""
    try:
        signed = tlog.verify_note(note_text, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    except tlog.NoteError as exc:
        raise NothingToExport(f"the trusted checkpoint does not verify: {exc}") from None
    return signed.size, signed.root
