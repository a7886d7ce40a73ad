"""The Celery application: worker and beat both start from here."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")

app = Celery("payflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_pans_in_worker_logs(logger, *args, **kwargs):
    # Celery replaces the root logger's handlers in workers and beat: put the PAN filter
    # back on the handlers it installed.
    from payflow.logging import install_pan_redaction

    install_pan_redaction(logger)
