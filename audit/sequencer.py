"""The sequencer: committed entries become leaves of one Merkle log, sealed every second.

One long-running process (``manage.py audit_sequencer``) holds the ``audit-sequencer``
lease; a second copy waits for it, never appends. Each step:

1. **find** committed entries not yet in the log: those above the highest entry id
   sequenced so far, and — because ids are not allocated in commit order (Galera nodes
   interleave ids, a transaction may commit after a later one) — those in the recent id
   window ``(settled, highest]`` that have no leaf yet. An id below ``settled`` was
   allocated more than ``AUDIT_SEQUENCER_SETTLE_SECONDS`` before a higher id was seen; an
   entry is inserted just before its COMMIT, so it has committed or never will.
2. **append** them, in id order, as leaves (``LogLeaf``) with the perfect subtrees they
   complete (``LogNode``), in one transaction that also renews the lease with a
   conditional UPDATE (a sequencer whose lease was taken over appends nothing), and — when
   the log grew and ``AUDIT_CHECKPOINT_INTERVAL`` passed since the last one — the signed
   checkpoint of the new size. ``LogLeaf.entry_id`` is unique and ``LogLeaf.index`` the
   primary key: an entry is in the log at most once, and a fork is a duplicate key.
3. **publish**, outside any transaction, the leaves not yet published to ``audit.events``
   and the newest checkpoint to ``audit.checkpoints``, in log order, with an idempotent
   producer; then record how far (``LogPublication``). A crash republishes; consumers
   deduplicate by ``index`` (also in the ``log_index`` header).

Only this process reads ``AUDIT_SIGNING_KEY`` (``signing_key_from_environment``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Producer
from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone
from prometheus_client import Counter, Gauge

from audit import tlog
from audit.leases import lease_claim, lease_owner, lease_release
from audit.models import ArchiveLease, AuditEntry, Checkpoint, LogLeaf, LogNode, LogPublication
from ledger.events import Topic
from payflow.platform import db, kafka

logger = logging.getLogger(__name__)

LEASE = "audit-sequencer"
PUBLICATION = "kafka"

SEQUENCED = Counter("payflow_audit_sequenced_total", "Audit entries appended to the log.")
CHECKPOINTS = Counter("payflow_audit_checkpoints_total", "Checkpoints signed by the sequencer.")
LOG_SIZE = Gauge("payflow_audit_log_size", "Leaves in the audit log (this sequencer's view).")


class SigningKeyMissing(RuntimeError):
    """The sequencer was started without ``AUDIT_SIGNING_KEY``(``_FILE``)."""


def signing_key_from_environment() -> tlog.Signer:
    """The log's signer key, read from ``AUDIT_SIGNING_KEY_FILE`` or ``AUDIT_SIGNING_KEY``
    here and nowhere else: web, workers and auditors' pages only ever have the public key
    (``settings.AUDIT_PUBLIC_KEY``)."""
    path = os.environ.get("AUDIT_SIGNING_KEY_FILE", "")
    text = Path(path).read_text().strip() if path else os.environ.get("AUDIT_SIGNING_KEY", "")
    if not text:
        raise SigningKeyMissing(
            "the audit sequencer needs its signing key: set AUDIT_SIGNING_KEY_FILE (or "
            "AUDIT_SIGNING_KEY) to a note signer key, `manage.py audit_keygen` makes one"
        )
    signer = tlog.Signer(text)
    public = tlog.Verifier(settings.AUDIT_PUBLIC_KEY)
    if signer.verifier_key() != public.text:
        raise SigningKeyMissing(
            "AUDIT_SIGNING_KEY does not match AUDIT_PUBLIC_KEY: checkpoints would not verify"
        )
    if signer.name != settings.AUDIT_LOG_ORIGIN:
        raise SigningKeyMissing(
            f"the signing key is named {signer.name!r}, the log's origin is "
            f"{settings.AUDIT_LOG_ORIGIN!r}: they must be the same"
        )
    return signer


def stored_nodes(keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored perfect nodes (level, index) → hash among ``keys``, in one query."""
    wanted = {tlog.node_key(level, index): (level, index) for level, index in keys}
    rows = LogNode.objects.filter(key__in=list(wanted)).values_list("key", "hash")
    return {wanted[key]: bytes(digest) for key, digest in rows}


T = TypeVar("T")


def batched(compute: Callable[[tlog.Getter], T]) -> T:
    """``compute(get)`` with every stored node it asks for read in one query: a first pass
    with a getter that only notes the keys (proof shapes depend on sizes alone), then the
    real pass from what one read found. A node the log lacks is still missing then
    (``LookupError``, as with ``stored_nodes``)."""
    wanted: set[tuple[int, int]] = set()

    def note(keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted.update(keys)
        return dict.fromkeys(keys, bytes(32))

    compute(note)
    found = stored_nodes(sorted(wanted)) if wanted else {}
    return compute(lambda keys: {key: found[key] for key in keys if key in found})


def log_size() -> int:
    """Leaves in the log (the highest index + 1)."""
    top = LogLeaf.objects.aggregate(top=Max("index"))["top"]
    return 0 if top is None else top + 1


@dataclass
class StepReport:
    appended: int = 0
    checkpoint: int | None = None
    published: int = 0


@dataclass
class Sequencer:
    """One sequencer's state between steps (rebuilt from the database by ``load``)."""

    signer: tlog.Signer
    owner: str = field(default_factory=lease_owner)
    batch: int = 5000
    settle_seconds: float = field(default_factory=lambda: settings.AUDIT_SEQUENCER_SETTLE_SECONDS)
    interval: float = field(default_factory=lambda: settings.AUDIT_CHECKPOINT_INTERVAL)
    publish: bool = True
    size: int = 0
    highest: int = 0  # the highest entry id in the log
    settled: int = 0  # every entry id <= this is in the log or never will be
    checkpoint_size: int = 0
    last_checkpoint_at: float = 0.0
    compact: Any = None
    _seen: collections.deque = field(default_factory=collections.deque)
    _producer: Any = None
    _renewed: float = 0.0

    # --- lease ---------------------------------------------------------------------

    def claim(self) -> bool:
        """Take (or renew) the sequencer lease; committed."""
        return lease_claim(LEASE, self.owner, seconds=settings.AUDIT_SEQUENCER_LEASE_SECONDS)

    def release(self) -> None:
        lease_release(LEASE, self.owner)

    # --- state ---------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the state from the stored log (after start, or a lost race)."""
        self.size = log_size()
        self.compact = tlog.CompactRange.from_nodes(self.size, stored_nodes)
        self.highest = LogLeaf.objects.aggregate(top=Max("entry_id"))["top"] or 0
        # Entries recorded in the last minutes may still be committing below `highest`.
        recent = timezone.now() - datetime.timedelta(seconds=max(600, 10 * self.settle_seconds))
        older = AuditEntry.objects.filter(created_at__lt=recent).aggregate(top=Max("id"))["top"]
        self.settled = min(older or 0, self.highest)
        self._seen.clear()
        last = Checkpoint.objects.order_by("-size").values_list("size", flat=True).first()
        self.checkpoint_size = last or 0
        LOG_SIZE.set(self.size)

    # --- one step ------------------------------------------------------------------

    def step(self) -> StepReport:
        """Find, append (and maybe seal), publish. Safe to call at any rate."""
        report = StepReport()
        found = self._find()
        try:
            report.appended, report.checkpoint = self._append(found)
        except IntegrityError:
            # Another writer of the log (should never happen under the lease): start over
            # from what is stored rather than from our memory.
            logger.error("audit sequencer: the log changed under us; reloading its state")
            self.load()
            return report
        if self.publish:
            report.published = self._publish()
        return report

    def _find(self) -> list[tuple[int, str]]:
        now = time.monotonic()
        self._seen.append((now, self.highest))
        while self._seen and self._seen[0][0] <= now - self.settle_seconds:
            self.settled = max(self.settled, self._seen.popleft()[1])
        found = list(
            AuditEntry.objects.filter(id__gt=self.highest)
            .order_by("id")
            .values_list("id", "hash")[: self.batch]
        )
        if self.settled < self.highest:
            in_log = LogLeaf.objects.filter(entry_id=OuterRef("id"))
            late = list(
                AuditEntry.objects.filter(id__gt=self.settled, id__lte=self.highest)
                .exclude(Exists(in_log))
                .order_by("id")
                .values_list("id", "hash")[: self.batch]
            )
            if late:
                logger.info("audit sequencer: %d entries committed late", len(late))
            found = late + found
        return found

    def _append(self, found: list[tuple[int, str]]) -> tuple[int, int | None]:
        due = (
            self.size > self.checkpoint_size or found
        ) and time.monotonic() - self.last_checkpoint_at >= self.interval
        if not found and not due:
            if time.monotonic() - self._renewed >= settings.AUDIT_SEQUENCER_LEASE_SECONDS / 3:
                if not self.claim():
                    raise LeaseLost("the audit sequencer lease was taken over")
                self._renewed = time.monotonic()
            return 0, None
        compact = self.compact.copy()
        nodes = compact.append([tlog.leaf_hash_of_entry(bytes.fromhex(h)) for _, h in found])
        size = self.size + len(found)
        signed = None
        if due and size > self.checkpoint_size:
            root = compact.root()
            body = tlog.checkpoint_body(settings.AUDIT_LOG_ORIGIN, size, root)
            signed = (size, root, tlog.sign_note(body, self.signer))
        _append_transaction(self.owner, self.size, found, nodes, signed)
        self._renewed = time.monotonic()
        self.compact, self.size = compact, size
        if found:
            self.highest = max(self.highest, max(entry_id for entry_id, _ in found))
            SEQUENCED.inc(len(found))
            LOG_SIZE.set(size)
        if signed is not None:
            self.checkpoint_size = size
            self.last_checkpoint_at = time.monotonic()
            CHECKPOINTS.inc()
            return len(found), size
        return len(found), None

    # --- publishing ----------------------------------------------------------------

    def _publish(self) -> int:
        publication, _ = LogPublication.objects.get_or_create(name=PUBLICATION)
        upto = min(self.checkpoint_size, publication.entries + self.batch)
        if upto <= publication.entries and publication.checkpoint_size >= self.checkpoint_size:
            return 0
        producer = self._get_producer()
        if producer is None:
            return 0
        messages = published_messages(publication.entries, upto)
        topic_events = kafka.topic(Topic.AUDIT_EVENTS)
        for index, value in messages:
            producer.produce(
                topic_events,
                key=settings.AUDIT_LOG_ORIGIN.encode(),
                value=value,
                headers=[("log_index", str(index).encode())],
            )
        note = None
        if publication.checkpoint_size < self.checkpoint_size and upto == self.checkpoint_size:
            note = (
                Checkpoint.objects.filter(size=self.checkpoint_size)
                .values_list("note", flat=True)
                .first()
            )
            if note is not None:
                producer.produce(
                    kafka.topic(Topic.AUDIT_CHECKPOINTS),
                    key=settings.AUDIT_LOG_ORIGIN.encode(),
                    value=note.encode(),
                    headers=[("tree_size", str(self.checkpoint_size).encode())],
                )
        remaining = producer.flush(10)
        if remaining:
            logger.warning("audit sequencer: %d messages not yet delivered; will resend", remaining)
            return 0
        fields = {"entries": upto}
        if note is not None:
            fields["checkpoint_size"] = self.checkpoint_size
        _publication_advance(**fields)
        return len(messages)

    def _get_producer(self) -> Any:
        if self._producer is None:
            try:
                self._producer = Producer(
                    kafka.client_config(
                        **{
                            "enable.idempotence": True,
                            "acks": "all",
                            "linger.ms": 5,
                            "compression.type": "lz4",
                            "log_level": 3,
                        }
                    )
                )
            except kafka.KafkaUnavailable as exc:
                logger.warning("audit sequencer: not publishing yet: %s", exc)
                return None
        return self._producer


class LeaseLost(RuntimeError):
    """Another sequencer holds the lease now: this one stops appending."""


@db.atomic
def _append_transaction(
    owner: str,
    first_index: int,
    found: list[tuple[int, str]],
    nodes: list[tuple[int, int, bytes]],
    signed: tuple[int, bytes, str] | None,
) -> None:
    until = timezone.now() + datetime.timedelta(seconds=settings.AUDIT_SEQUENCER_LEASE_SECONDS)
    if not ArchiveLease.objects.filter(name=LEASE, owner=owner).update(expires_at=until):
        raise LeaseLost("the audit sequencer lease was taken over")
    if found:
        LogLeaf.objects.bulk_create(
            [
                LogLeaf(index=first_index + offset, entry_id=entry_id)
                for offset, (entry_id, _) in enumerate(found)
            ]
        )
        LogNode.objects.bulk_create(
            [
                LogNode(key=tlog.node_key(level, index), hash=digest)
                for level, index, digest in nodes
            ]
        )
    if signed is not None:
        size, root, note = signed
        Checkpoint.objects.create(size=size, root=root.hex(), note=note, created_at=timezone.now())


@db.atomic
def _publication_advance(**fields: int) -> None:
    LogPublication.objects.filter(name=PUBLICATION).update(**fields)


def published_messages(first: int, upto: int) -> list[tuple[int, bytes]]:
    """The ``audit.events`` messages of leaves ``first..upto-1``: JSON objects
    ``{"index", "prev_hash", "hash", "body" (b64 canonical bytes), "entry" (parsed)}``."""
    if upto <= first:
        return []
    leaves = dict(
        LogLeaf.objects.filter(index__gte=first, index__lt=upto).values_list("entry_id", "index")
    )
    rows = AuditEntry.objects.filter(id__in=list(leaves)).values_list(
        "id", "prev_hash", "hash", "body"
    )
    messages = []
    for entry_id, prev_hash, digest, body in rows:
        body = bytes(body)
        value = {
            "body": base64.b64encode(body).decode(),
            "entry": json.loads(body),
            "hash": digest,
            "index": leaves[entry_id],
            "prev_hash": prev_hash,
        }
        messages.append((leaves[entry_id], json.dumps(value, sort_keys=True).encode()))
    messages.sort()
    return messages


def run_forever(sequencer: Sequencer, *, poll: float = 0.2, stop: Any = None) -> None:
    """Wait for the lease, then step until ``stop()`` is true (or forever).

    A database that goes away (a Galera node killed behind HAProxy, a connection cut) is
    waited out, not a reason to exit: the connection is dropped, and after a doubling
    pause (up to ``DATABASE_RETRY_MAX``) the lease is claimed and the log's state loaded
    afresh, since a step cut short may have left the in-memory view ahead of what
    committed. (The drills found a sequencer that exited on the first lost connection.)"""
    waiting_logged = False
    pause = DATABASE_RETRY_BASE
    while not (stop and stop()):
        try:
            if not sequencer.claim():
                if not waiting_logged:
                    logger.info("audit sequencer: another copy holds the lease; waiting")
                    waiting_logged = True
                time.sleep(1.0)
                continue
            waiting_logged = False
            sequencer.load()
            logger.info("audit sequencer: holding the lease at log size %d", sequencer.size)
            while not (stop and stop()):
                report = sequencer.step()
                pause = DATABASE_RETRY_BASE
                if not report.appended:
                    time.sleep(poll)
        except LeaseLost as exc:
            logger.error("audit sequencer: %s; waiting", exc)
        except (OperationalError, InterfaceError) as exc:
            logger.warning(
                "audit sequencer: the database is unavailable (%s); again in %.1f s", exc, pause
            )
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, DATABASE_RETRY_MAX)
    with contextlib.suppress(DatabaseError):
        sequencer.release()


DATABASE_RETRY_BASE, DATABASE_RETRY_MAX = 0.5, 8.0


def first_unsealed_entry(sealed: int) -> tuple[str, str, datetime.datetime] | None:
    """The live entry of leaf ``sealed``, the first leaf no checkpoint of size ``sealed``
    covers: (object type, object id, created at); None if there is no such leaf or entry."""
    entry_id = LogLeaf.objects.filter(index=sealed).values_list("entry_id", flat=True).first()
    if entry_id is None:
        return None
    return (
        AuditEntry.objects.filter(id=entry_id)
        .values_list("object_type", "object_id", "created_at")
        .first()
    )


def sequencer_lag_seconds(now: datetime.datetime | None = None) -> float:
    """How long the oldest entry not yet sealed by a checkpoint has waited (0 when every
    entry is sealed): entries beyond the log's head, and leaves beyond the last checkpoint.
    (An entry committed late below the head is not counted here; the sequencer's settle
    window takes it within seconds, and verification reports one it never took.)"""
    now = now or timezone.now()
    head = LogLeaf.objects.aggregate(top=Max("entry_id"))["top"] or 0
    waiting = (
        AuditEntry.objects.filter(id__gt=head).order_by("id").values_list("created_at", flat=True)
    ).first()
    sealed = Checkpoint.objects.order_by("-size").values_list("size", flat=True).first() or 0
    first_unsealed = first_unsealed_entry(sealed)
    if first_unsealed is not None:
        unsealed_at = first_unsealed[2]
        if waiting is None or unsealed_at < waiting:
            waiting = unsealed_at
    return 0.0 if waiting is None else max(0.0, (now - waiting).total_seconds())
