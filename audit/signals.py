"""Signals of the audit trail, sent inside the transaction that writes the row.

``audit_recorded(entry=AuditEntry)`` after every audit row; ``checkpoint_signed(
checkpoint=AuditCheckpoint)`` after every checkpoint. The outbox mirrors both to Kafka
(``audit.events``, ``audit.checkpoints``), outside the database's reach.
"""

from django.dispatch import Signal

audit_recorded = Signal()
checkpoint_signed = Signal()
