from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"

    def ready(self) -> None:
        # Imported when the apps are ready: receivers import models.
        from audit.signals import audit_recorded, checkpoint_signed
        from ledger.signals import ledger_changed
        from outbox import receivers

        ledger_changed.connect(
            receivers.record_transaction_event, dispatch_uid="outbox.transaction_event"
        )
        audit_recorded.connect(receivers.record_audit_entry, dispatch_uid="outbox.audit_entry")
        checkpoint_signed.connect(receivers.record_checkpoint, dispatch_uid="outbox.checkpoint")
