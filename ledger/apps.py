from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"

    def ready(self) -> None:
        # Imported when the apps are ready: the registration's lookups use models.
        from ledger.services.personal_data import register_personal_fields

        register_personal_fields()
