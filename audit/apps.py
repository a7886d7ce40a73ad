from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        # Imported when the apps are ready: the writer imports models.
        from audit.services import write_entries
        from audit.subjects import STORE
        from payflow.platform import personal, trail

        trail.set_writer(write_entries)
        personal.set_key_store(STORE)
