"""The audit trail: entries chained per object, sequenced into one Merkle log (DESIGN.md §6)."""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from payflow.platform import personal
from payflow.platform.guards import UnsanctionedWrite

GENESIS_HASH = "0" * 64  # prev_hash of an object's first entry


class AuditQuerySet(models.QuerySet):
    """Audit rows are never updated or deleted through the ORM (the archiver deletes with
    raw SQL, and only rows a verified segment covers: the database trigger checks)."""

    def update(self, **kwargs: Any) -> int:
        raise UnsanctionedWrite("audit rows are immutable: update() refused")

    def delete(self) -> Any:
        raise UnsanctionedWrite("audit rows are immutable: delete() refused")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise UnsanctionedWrite("audit rows are immutable: bulk_update() refused")

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsanctionedWrite("audit rows are immutable: update_or_create() refused")


class AuditEntry(models.Model):
    """One recorded change of one object (``docs/audit-formats.md`` §1).

    ``body`` holds the entry's canonical bytes, the source of truth;
    ``hash = SHA-256("payflow-audit-entry/2" ‖ 0x00 ‖ prev_hash ‖ body)`` and ``prev_hash``
    is the hash of the object's previous entry (``GENESIS_HASH`` for its first). The other
    columns repeat what queries need; verification checks them against the body. The
    unique (object, prev_hash) makes a fork of one object's chain impossible. Entries are
    appended to the log (``LogLeaf``) by the sequencer after they commit."""

    id = models.BigAutoField(primary_key=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    encoding_version = models.PositiveSmallIntegerField(default=2)
    body = models.BinaryField()
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    action = models.CharField(max_length=16)
    event_type = models.CharField(max_length=64)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64)
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    objects = AuditQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["object_type", "object_id", "prev_hash"], name="audit_object_chain"
            ),
        ]
        indexes = [
            models.Index(fields=["created_at"], name="audit_entry_created"),
            models.Index(fields=["actor_id"], name="audit_entry_actor"),
            models.Index(fields=["event_type", "created_at"], name="audit_entry_event"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.event_type} on {self.object_type} {self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise UnsanctionedWrite("audit rows are immutable: save() of an existing row refused")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsanctionedWrite("audit rows are immutable: delete() refused")

    @property
    def fields(self) -> dict[str, Any]:
        """The entry as recorded: its canonical bytes parsed (``docs/audit-formats.md``),
        personal data sealed."""
        return json.loads(bytes(self.body))

    @property
    def revealed(self) -> dict[str, Any]:
        """The entry as a person reads it: personal data opened, or ``[erased]``."""
        return personal.reveal_entry(self.fields)


class LogLeaf(models.Model):
    """Leaf ``index`` of the log's Merkle tree is the entry ``entry_id`` (append-only:
    written by the sequencer alone, under its lease; triggers refuse UPDATE and DELETE).
    The entry may since have been archived and deleted: the leaf stays."""

    index = models.PositiveBigIntegerField(primary_key=True)
    entry_id = models.PositiveBigIntegerField(unique=True)

    class Meta:
        verbose_name_plural = "log leaves"

    def __str__(self) -> str:
        return f"leaf {self.index} = entry {self.entry_id}"


class LogNode(models.Model):
    """A perfect subtree of the log: ``key = (level << 56) | index`` is the hash of leaves
    ``[index·2^level, (index+1)·2^level)`` (level 0: the leaf hashes). Only complete
    subtrees are stored, so a node never changes; any proof needs O(log n) of them
    (``audit.tlog``). Append-only like the leaves; kept after retention purges."""

    key = models.PositiveBigIntegerField(primary_key=True)
    hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"node {self.key >> 56}/{self.key & ((1 << 56) - 1)}"


class Checkpoint(models.Model):
    """A signed checkpoint of the log (C2SP tlog-checkpoint in a signed note,
    ``docs/audit-formats.md`` §3), written by the sequencer; append-only."""

    size = models.PositiveBigIntegerField(primary_key=True)
    root = models.CharField(max_length=64)
    note = models.TextField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"checkpoint at {self.size}"


class Cosignature(models.Model):
    """A witness's cosignature (``cosignature/v1``) of a checkpoint: the signature line as
    the witness sent it, verified with that witness's configured key before it is stored."""

    id = models.BigAutoField(primary_key=True)
    checkpoint = models.ForeignKey(
        Checkpoint, on_delete=models.PROTECT, related_name="cosignatures"
    )
    witness = models.CharField(max_length=200)
    line = models.TextField()
    signed_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["checkpoint", "witness"], name="cosignature_once"),
        ]

    def __str__(self) -> str:
        return f"{self.witness} on {self.checkpoint_id}"


class LogPublication(models.Model):
    """How far the sequencer has published the log to Kafka: ``entries`` leaves to
    ``audit.events`` and the checkpoint of size ``checkpoint_size`` to ``audit.checkpoints``
    (a mutable progress row, not evidence: a crash republishes, consumers dedupe by index)."""

    name = models.CharField(max_length=32, primary_key=True)
    entries = models.PositiveBigIntegerField(default=0)
    checkpoint_size = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.entries} entries"


class ArchiveSegment(models.Model):
    """One segment file holding the log's leaves ``first_index..last_index``
    (``audit.segments``, ``docs/audit-formats.md`` §7).

    Life: recorded (``verified_at`` NULL: the file may not be written yet) → verified (the
    file was read back and every entry checked; from now on the DELETE trigger admits the
    covered entries) → live entries deleted (``rows_deleted_at``) → purged at the end of
    retention (``purged_at``; the file is removed afterwards, ``file_removed_at``)."""

    PENDING, VERIFIED, ARCHIVED, PURGED = "pending", "verified", "archived", "purged"

    id = models.BigAutoField(primary_key=True)
    first_index = models.PositiveBigIntegerField(unique=True)
    last_index = models.PositiveBigIntegerField()
    row_count = models.PositiveIntegerField()
    file_digest = models.CharField(max_length=64)
    file_size = models.PositiveBigIntegerField(default=0)
    storage_path = models.CharField(max_length=500)
    format_version = models.PositiveSmallIntegerField(default=2)
    first_created_at = models.DateTimeField(null=True, blank=True)
    last_created_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    rows_deleted_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)
    purge = models.ForeignKey(
        "RetentionPurge", null=True, blank=True, on_delete=models.PROTECT, related_name="segments"
    )
    file_removed_at = models.DateTimeField(null=True, blank=True)
    # The last on-demand check (an auditor's, or the nightly verification's).
    checked_at = models.DateTimeField(null=True, blank=True)
    check_ok = models.BooleanField(null=True, blank=True)
    check_detail = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_index__gte=models.F("first_index")),
                name="segment_index_order",
            ),
        ]
        indexes = [models.Index(fields=["first_index", "last_index"], name="segment_indexes")]

    def __str__(self) -> str:
        return f"log {self.first_index}..{self.last_index}"

    @property
    def status(self) -> str:
        if self.purged_at:
            return self.PURGED
        if self.rows_deleted_at:
            return self.ARCHIVED
        return self.VERIFIED if self.verified_at else self.PENDING


class ArchiveLease(models.Model):
    """Who runs the archiver (or the retention purge), until when: claimed by a committed
    conditional UPDATE, so two runs at once never archive the same rows."""

    name = models.CharField(max_length=32, primary_key=True)
    owner = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} → {self.owner or 'free'}"


class RetentionPurge(models.Model):
    """Segments removed at the end of retention: the log's leaves ``first_index..
    last_index`` are gone, their tree nodes stay (so later entries still prove). The purge
    is itself an audit entry (``audit.retention_purged``), sealed by the next checkpoint."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField()
    first_index = models.PositiveBigIntegerField()
    last_index = models.PositiveBigIntegerField()
    segment_count = models.PositiveIntegerField()
    row_count = models.PositiveBigIntegerField()
    detail = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"retention purge {self.id} ({self.segment_count} segments)"


class LegalHold(models.Model):
    """Stops the retention purge for the rows of one object, or of everything that belongs
    to a merchant (``object_type`` ``ledger.merchant``). A merchant's ``legal_hold`` flag
    does the same. Released holds are kept (``released_at``)."""

    id = models.BigAutoField(primary_key=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    reason = models.CharField(max_length=500)
    placed_by = models.CharField(max_length=200)
    placed_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id"], name="legal_hold_object")]

    def __str__(self) -> str:
        return f"hold on {self.object_type} {self.object_id}"


class VerificationRun(models.Model):
    """One verification of the trail, started by an auditor or by beat, with its progress
    (``done`` of ``total`` log entries, updated by the worker as it goes) and its result
    (the breaks, each naming its kind and object)."""

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

    id = models.BigAutoField(primary_key=True)
    started_by = models.CharField(max_length=200)
    status = models.CharField(max_length=16, default=QUEUED)
    total = models.PositiveBigIntegerField(default=0)
    done = models.PositiveBigIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    ok = models.BooleanField(null=True)
    incremental = models.BooleanField(default=False)
    # The checkpoint size this run verified up to (a later incremental run starts there).
    checkpoint_size = models.PositiveBigIntegerField(null=True, blank=True)
    breaks = models.JSONField(default=list)
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"verification {self.id} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


class DataSubjectKey(models.Model):
    """The key that seals one data subject's personal data in audit entries and events
    (``payflow.platform.personal``), wrapped: AES-256-GCM under a key derived (HKDF-SHA256)
    from vault key ``kek_version``, the subject as associated data.

    Erasing the subject sets ``wrapped`` to NULL (``erased_at``): every value sealed for it
    reads as erased from then on, while the entries' bytes and the log's proofs stay as
    they were. Never shown anywhere; not audited itself (the erasure is, on
    ``audit.datasubject``)."""

    subject = models.CharField(max_length=64, primary_key=True)
    wrapped = models.BinaryField(max_length=64, null=True)
    kek_version = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"key of {self.subject}" + (" (erased)" if self.erased_at else "")
