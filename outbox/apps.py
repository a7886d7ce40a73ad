from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"

    def ready(self) -> None:
        # Imported when the apps are ready: receivers import models.
        from ledger.signals import ledger_changed
        from outbox import receivers

        ledger_changed.connect(
            receivers.record_transaction_event, dispatch_uid="outbox.transaction_event"
        )
