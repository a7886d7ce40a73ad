from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class PayflowConfig(AppConfig):
    name = "payflow"
    verbose_name = "PayFlow platform"

    def ready(self) -> None:
        # Connects the Celery signals that record every scheduled job's runs.
        from payflow import jobs  # noqa: F401

        # kombu's filesystem transport (the embedded default broker) needs its folders
        # before the first message is sent or read.
        for folder in settings.CELERY_BROKER_TRANSPORT_OPTIONS.values():
            if isinstance(folder, str):
                Path(folder).mkdir(parents=True, exist_ok=True)
