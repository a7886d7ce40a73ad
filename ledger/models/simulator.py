from __future__ import annotations

from django.db import models


class SimulatedOperation(models.Model):
    """The acquirer simulator's own book (``ledger.simulator``): what a real acquirer keeps
    on its side of the wire. Written only by the simulator, in its own small transactions
    while PayFlow holds none (acquirer calls are ``outside_transaction``), so a crash of
    PayFlow after the call leaves it recorded, exactly like a real acquirer's.

    One row per request reference. An authorization's row also carries its state (voided,
    captured and refunded amounts); capture, void and refund rows are the answers to those
    commands, kept for idempotent replays and inquiries.
    """

    AUTHORIZE, CAPTURE, VOID, REFUND = "authorize", "capture", "void", "refund"

    reference = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=16)
    # The authorization this acts on (an authorization's own reference for its row).
    authorization = models.CharField(max_length=64, db_index=True)
    amount = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True, default="")
    approved = models.BooleanField()
    decline_code = models.CharField(max_length=40, blank=True, default="")
    message = models.CharField(max_length=200, blank=True, default="")
    authorization_code = models.CharField(max_length=12, blank=True, default="")
    # Authorization rows: what has happened to the hold since.
    captured_amount = models.BigIntegerField(default=0)
    refunded_amount = models.BigIntegerField(default=0)
    voided = models.BooleanField(default=False)
    # The test card whose refunds fail (a flag: the simulator keeps no card number).
    refunds_fail = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        outcome = "approved" if self.approved else f"declined ({self.decline_code})"
        return f"{self.kind} {self.reference}: {outcome}"
