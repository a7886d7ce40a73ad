from pathlib import Path

from django.apps import AppConfig
from django.conf import settings
from django.contrib.admin import apps as admin_apps


class PayflowConfig(AppConfig):
    default = True  # the module holds the admin's config too
    name = "payflow"
    verbose_name = "PayFlow platform"

    def ready(self) -> None:
        # Connects the Celery signals that record every scheduled job's runs and the
        # login guard's (failed logins counted and audited), and registers the system
        # checks.
        # Every ledger change made under an Idempotency-Key claim checks the claim's fence
        # and links the endpoint's object, in the change's transaction.
        from ledger.selectors import register_invariant_check
        from ledger.signals import ledger_changed
        from payflow import checks, jobs, login_guard  # noqa: F401
        from payflow.api.idempotency import fence_ledger_change, idempotency_check_records

        ledger_changed.connect(fence_ledger_change, dispatch_uid="payflow.idempotency_fence")
        register_invariant_check(idempotency_check_records)
        login_guard.register_personal_fields()

        # kombu's filesystem transport (the embedded default broker) needs its folders
        # before the first message is sent or read.
        for folder in settings.CELERY_BROKER_TRANSPORT_OPTIONS.values():
            if isinstance(folder, str):
                Path(folder).mkdir(parents=True, exist_ok=True)


class PayFlowAdminConfig(admin_apps.AdminConfig):
    """Django's admin on PayFlow's site (``payflow.admin_site``: where each role lands)."""

    default = False

    default_site = "payflow.admin_site.PayFlowAdminSite"
