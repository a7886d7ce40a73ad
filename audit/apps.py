from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        # Imported when the apps are ready: receivers import models.
        from audit.receivers import record_ledger_change
        from ledger.signals import ledger_changed

        ledger_changed.connect(record_ledger_change, dispatch_uid="audit.ledger_change")
