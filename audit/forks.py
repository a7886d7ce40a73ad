"""The checkpoints page's own fork check: do the stored checkpoints still describe one log?

Witnesses (``manage.py audit_witness``) are the check that does not trust this service:
they keep the checkpoints they accepted elsewhere. This one runs on every view of the
checkpoints page, over the checkpoints it shows, so an auditor sees at once when the
stored signed checkpoints and the stored tree disagree — a checkpoint whose note no longer
verifies with the log's public key or no longer says its size and root, or two checkpoints
that no consistency proof from the stored nodes links (a rewritten tree, or a checkpoint
signed for another tree).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from audit import merkle, tlog
from audit.models import Checkpoint
from audit.sequencer import stored_nodes


@dataclass(frozen=True)
class Alarm:
    size: int
    detail: str


def check_checkpoints(checkpoints: Sequence[Checkpoint]) -> list[Alarm]:
    """Alarms for ``checkpoints`` (any order): each note verifies and says its own size and
    root; each is consistent with the next larger one, by a proof from the stored nodes."""
    verifier = tlog.Verifier(settings.AUDIT_PUBLIC_KEY)
    alarms = []
    readable = []
    for checkpoint in sorted(checkpoints, key=lambda c: c.size):
        try:
            signed = tlog.verify_note(checkpoint.note, verifier)
        except tlog.NoteError as exc:
            alarms.append(Alarm(checkpoint.size, f"its note does not verify: {exc}"))
            continue
        if (signed.size, signed.root.hex()) != (checkpoint.size, checkpoint.root):
            alarms.append(Alarm(checkpoint.size, "its note names another size or root"))
            continue
        readable.append(checkpoint)
    for older, newer in itertools.pairwise(readable):
        proof = tlog.consistency_proof(older.size, newer.size, stored_nodes)
        if not merkle.verify_consistency(
            older.size, newer.size, bytes.fromhex(older.root), bytes.fromhex(newer.root), proof
        ):
            alarms.append(
                Alarm(
                    newer.size,
                    f"no consistency proof from the stored tree links it to checkpoint "
                    f"{older.size}: the log was forked or its tree rewritten",
                )
            )
    return alarms
