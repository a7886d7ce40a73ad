"""The audit trail: hash-chained, append-only rows in L lanes."""

from __future__ import annotations

from typing import Any

from django.db import models

from payflow.platform.guards import UnsanctionedWrite

GENESIS_HASH = "0" * 64


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
    """One recorded change. ``hash`` = SHA-256(tag ‖ prev_hash ‖ canonical encoding)
    (see ``audit.chain``); ``seq`` is contiguous from 1 within the lane."""

    id = models.BigAutoField(primary_key=True)
    lane = models.PositiveSmallIntegerField()
    seq = models.PositiveBigIntegerField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    encoding_version = models.PositiveSmallIntegerField(default=1)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    action = models.CharField(max_length=16)
    event_type = models.CharField(max_length=64)
    old_values = models.JSONField(null=True, blank=True)
    new_values = models.JSONField(null=True, blank=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64)
    actor_label = models.CharField(max_length=200, blank=True, default="")
    ip = models.CharField(max_length=45, blank=True, default="")
    user_agent = models.CharField(max_length=300, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    task_id = models.CharField(max_length=64, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField()

    objects = AuditQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lane", "seq"], name="audit_lane_seq_unique"),
        ]
        indexes = [
            models.Index(fields=["object_type", "object_id", "lane", "seq"], name="audit_object"),
            models.Index(fields=["created_at"], name="audit_created"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"lane {self.lane} #{self.seq} {self.event_type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise UnsanctionedWrite("audit rows are immutable: save() of an existing row refused")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsanctionedWrite("audit rows are immutable: delete() refused")


class LaneHead(models.Model):
    """The last (seq, hash) of a lane, locked (SELECT … FOR UPDATE) and advanced in the
    same transaction as the entry, so a lane never forks."""

    lane = models.PositiveSmallIntegerField(primary_key=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"lane {self.lane} at {self.seq}"


class ArchiveSegment(models.Model):
    """One segment file holding lane rows ``first_seq..last_seq`` (``audit.segments``).

    Life: recorded (``verified_at`` NULL: the file may not be written yet) → verified (the
    file was read back and every row checked; from now on the DELETE trigger admits the
    covered rows) → live rows deleted (``rows_deleted_at``) → purged at the end of
    retention (``purged_at``; the file is removed afterwards, ``file_removed_at``)."""

    PENDING, VERIFIED, ARCHIVED, PURGED = "pending", "verified", "archived", "purged"

    id = models.BigAutoField(primary_key=True)
    lane = models.PositiveSmallIntegerField()
    first_seq = models.PositiveBigIntegerField()
    last_seq = models.PositiveBigIntegerField()
    first_prev_hash = models.CharField(max_length=64)
    last_hash = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField()
    file_digest = models.CharField(max_length=64)
    file_size = models.PositiveBigIntegerField(default=0)
    storage_path = models.CharField(max_length=500)
    format_version = models.PositiveSmallIntegerField(default=1)
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
            models.UniqueConstraint(fields=["lane", "first_seq"], name="segment_lane_first_unique"),
            models.CheckConstraint(
                condition=models.Q(last_seq__gte=models.F("first_seq")), name="segment_range_order"
            ),
        ]
        indexes = [models.Index(fields=["lane", "first_seq", "last_seq"], name="segment_range")]

    def __str__(self) -> str:
        return f"lane {self.lane} {self.first_seq}..{self.last_seq}"

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
    """A signed record of segments removed at the end of retention (format
    ``payflow-audit-retention/1``, signed like a checkpoint): per lane, the seq and hash the
    chain now starts from, and every removed segment's range, digest and row count. The
    chain verifies from these boundaries; the purge itself is an audit row."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    signed = models.JSONField()
    segment_count = models.PositiveIntegerField()
    row_count = models.PositiveBigIntegerField()

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


class AuditCheckpoint(models.Model):
    """A signed checkpoint (``audit.signing`` format ``payflow-audit-checkpoint/1``): every
    lane's head and a Merkle root over the entries since the previous checkpoint, signed
    with Ed25519. The private key is never in the database; auditors verify with the
    public key. ``number`` is unique, so two concurrent runs cannot both write one."""

    number = models.PositiveIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    signed = models.JSONField()
    tree_size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"checkpoint {self.number} ({self.tree_size} entries)"


class VerificationRun(models.Model):
    """One verification of the trail, started by an auditor or by beat, with its progress
    (updated lane by lane by the worker) and its result (the first break per lane)."""

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

    id = models.BigAutoField(primary_key=True)
    started_by = models.CharField(max_length=200)
    status = models.CharField(max_length=16, default=QUEUED)
    lanes_total = models.PositiveIntegerField(default=0)
    lanes_done = models.PositiveIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    ok = models.BooleanField(null=True)
    incremental = models.BooleanField(default=False)
    # The checkpoint whose heads this run verified up to (a later incremental run starts there).
    checkpoint_number = models.PositiveIntegerField(null=True, blank=True)
    breaks = models.JSONField(default=list)
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"verification {self.id} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.lanes_done / self.lanes_total) if self.lanes_total else 0
