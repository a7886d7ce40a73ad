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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from audit import merkle, tlog
from audit.models import Checkpoint
from audit.sequencer import batched

T = TypeVar("T")


@dataclass(frozen=True)
class Alarm:
    size: int
    detail: str


def check_checkpoints(checkpoints: Sequence[Checkpoint]) -> list[Alarm]:
    """Alarms for ``checkpoints`` (any order): each note verifies and says its own size and
    root; the stored tree's root at the largest one's size is its signed root; and each is
    consistent with the next larger one, by a proof from the stored nodes. Every node the
    checks need is read in one query (``sequencer.batched``)."""
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
    if not readable:
        return alarms
    pairs = list(itertools.pairwise(readable))
    newest = readable[-1]

    def proofs(get: tlog.Getter) -> tuple[bytes | None, list[list[bytes] | None]]:
        def root() -> bytes:
            return tlog.root_at(newest.size, get)

        links: list[list[bytes] | None] = []
        for older, newer in pairs:

            def link(older: Checkpoint = older, newer: Checkpoint = newer) -> list[bytes]:
                return tlog.consistency_proof(older.size, newer.size, get)

            links.append(_or_none(link))
        return _or_none(root), links

    root, consistency = batched(proofs)
    if root is None:
        alarms.append(Alarm(newest.size, _MISSING))
    elif root.hex() != newest.root:
        alarms.append(
            Alarm(newest.size, "the stored tree's root at its size is not its signed root")
        )
    for (older, newer), proof in zip(pairs, consistency, strict=True):
        if proof is None:
            alarms.append(Alarm(newer.size, _MISSING))
        elif not merkle.verify_consistency(
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


_MISSING = "the stored tree lacks nodes its proofs need: the tree was damaged"


def _or_none(compute: Callable[[], T]) -> T | None:
    try:
        return compute()
    except LookupError:
        return None
