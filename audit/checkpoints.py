"""Writing signed checkpoints and using them as verification anchors."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import signing
from audit.models import AuditCheckpoint, LaneHead
from audit.segments import lane_hashes
from audit.signals import checkpoint_signed
from payflow.platform import db


def _heads() -> dict[int, tuple[int, str]]:
    heads = {lane: (0, "0" * 64) for lane in range(settings.AUDIT_LANES)}
    heads.update({head.lane: (head.seq, head.hash) for head in LaneHead.objects.all()})
    return heads


def _new_entries(previous_heads: dict[int, tuple[int, str]], heads: dict[int, tuple[int, str]]):
    """The entries after the previous checkpoint's heads, up to the heads just read, in
    (lane, seq) order. Heads are advanced in the same transaction as their entries, so
    every entry up to a committed head is committed too."""
    for lane in sorted(heads):
        after, upto = previous_heads.get(lane, (0, ""))[0], heads[lane][0]
        if upto <= after:
            continue
        for seq, digest in lane_hashes(lane, after, upto):
            yield lane, seq, digest


@db.atomic
def audit_checkpoint_create() -> AuditCheckpoint | None:
    """Sign the heads of every lane and the Merkle root of the entries added since the last
    checkpoint. One transaction; returns None when nothing changed, or when a concurrent
    run wrote this checkpoint number first (the job is safe to run twice)."""
    last = AuditCheckpoint.objects.order_by("-number").first()
    previous = last.signed["body"] if last else None
    heads = _heads()
    previous_heads = (
        {}
        if previous is None
        else {row["lane"]: (row["seq"], row["hash"]) for row in previous["lanes"]}
    )
    if previous is not None and previous_heads == heads:
        return None
    body = signing.build_checkpoint_body(
        key_id=settings.AUDIT_SIGNING_KEY_ID,
        created_at=timezone.now(),
        heads=heads,
        entries=_new_entries(previous_heads, heads),
        previous=previous,
    )
    signed = signing.sign_checkpoint(
        body, settings.AUDIT_SIGNING_KEY, settings.AUDIT_SIGNING_KEY_ID
    )
    try:
        with transaction.atomic():  # a savepoint: a duplicate number must not break ours
            checkpoint = AuditCheckpoint.objects.create(
                number=body["number"],
                created_at=timezone.now(),
                key_id=body["key_id"],
                digest=signing.checkpoint_digest(body),
                signed=signed,
                tree_size=body["tree"]["size"],
            )
    except IntegrityError:
        return None
    checkpoint_signed.send(sender=AuditCheckpoint, checkpoint=checkpoint)
    return checkpoint


def checkpoint_anchors() -> dict[int, dict[int, str]]:
    """Per lane, {seq: hash} of every head a signed checkpoint recorded — checked against
    the rows by verification (a chain rewritten after an edit no longer matches)."""
    public_key = signing.public_key_from_seed(settings.AUDIT_SIGNING_KEY)
    anchors: dict[int, dict[int, str]] = {}
    for checkpoint in AuditCheckpoint.objects.order_by("number").iterator():
        if not signing.verify_checkpoint(checkpoint.signed, public_key):
            raise signing.CheckpointError(f"checkpoint {checkpoint.number} has a bad signature")
        for head in checkpoint.signed["body"]["lanes"]:
            if head["seq"]:
                anchors.setdefault(head["lane"], {})[head["seq"]] = head["hash"]
    return anchors
