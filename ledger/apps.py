from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"

    def ready(self) -> None:
        # Imported when the apps are ready: the registration's lookups use models.
        from ledger.services.personal_data import register_personal_fields
        from ledger.signals import forget_cached, ledger_changed

        register_personal_fields()
        ledger_changed.connect(forget_cached, dispatch_uid="ledger.forget_cached")
