"""PayFlow: composition root and platform helpers."""

from payflow.celery import app as celery_app

__all__ = ["celery_app"]
