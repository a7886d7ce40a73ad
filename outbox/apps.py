from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"

    def ready(self) -> None:
        from ledger.signals import ledger_changed
        from outbox.receivers import record_transaction_event

        ledger_changed.connect(record_transaction_event, dispatch_uid="outbox.transaction_event")
