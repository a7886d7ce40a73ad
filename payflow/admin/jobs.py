"""Admin of the scheduled jobs: the whole beat schedule, each job with its latest run."""

from __future__ import annotations

from django.contrib import admin

from payflow.admin.base import ReadOnlyAdmin
from payflow.jobs import scheduled_jobs
from payflow.models import JobRun


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    """The schedule (``CELERY_BEAT_SCHEDULE``, read-only: it changes with a deploy) above
    the recorded runs."""

    change_list_template = "admin/payflow/jobrun/change_list.html"
    list_display = (
        "job",
        "task",
        "last_status",
        "last_started_at",
        "last_duration_seconds",
        "last_success_at",
        "runs",
        "failures",
        "last_error",
    )
    list_filter = ("last_status",)
    actions = None

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {**(extra_context or {}), "schedule": scheduled_jobs()}
        )
