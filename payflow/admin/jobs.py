"""Admin of the scheduled jobs: the whole beat schedule, each job with its latest run, and
pausing or resuming a job (an operator action, with a reason, audited)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import Http404
from django.urls import path, reverse

from payflow import operations
from payflow.admin.base import ActionPage, ReadOnlyAdmin, ReasonForm, render_action
from payflow.jobs import JOB_HISTORY, job_run_now_send, scheduled_jobs
from payflow.models import JobRun


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    """The schedule (``CELERY_BEAT_SCHEDULE``: when each job runs changes with a deploy;
    whether it runs, operators decide here) above the recorded runs."""

    change_list_template = "admin/payflow/jobrun/change_list.html"
    operate_permission = "payflow.change_jobrun"
    list_display = (
        "job",
        "task",
        "last_status",
        "last_started_at",
        "last_duration_seconds",
        "last_success_at",
        "runs",
        "failures",
        "paused_at",
        "last_error",
    )
    list_filter = ("last_status",)
    actions = None

    def changelist_view(self, request, extra_context=None):
        schedule = scheduled_jobs(with_history=True)
        _label_starters([record for job in schedule for record in job.recent])
        return super().changelist_view(
            request,
            {
                **(extra_context or {}),
                "schedule": schedule,
                "can_pause": self.has_operate_permission(request),
                "history_length": JOB_HISTORY,
            },
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("schedule/<str:job>/pause/", view(self.pause_view), name="payflow_job_pause"),
            path("schedule/<str:job>/resume/", view(self.resume_view), name="payflow_job_resume"),
            path("schedule/<str:job>/run/", view(self.run_now_view), name="payflow_job_run_now"),
            *super().get_urls(),
        ]

    def run_now_view(self, request, job):
        """Run a scheduled job once, now (audited, with a reason): the action is recorded,
        then the run is queued for the workers; it shows below when it has finished."""
        scheduled = {entry.name: entry for entry in scheduled_jobs()}.get(job)
        if scheduled is None:
            raise Http404("no such scheduled job")
        page = ActionPage(
            title=f"Run the scheduled job {job} now",
            form_class=ReasonForm,
            perform=lambda data: job_run_now_send(
                operations.operator_job_run_now(job=job, reason=data["reason"])
            ),
            success=lambda task_id: (
                f"{job} is queued (task {task_id}); its run shows in the job's last runs "
                "when a worker has finished it."
            ),
            noun="job",
            summary=[
                ("job", job),
                ("task", scheduled.task),
                ("arguments", scheduled.kwargs or "—"),
                ("when", scheduled.every),
                ("next run", scheduled.next_run or "paused"),
            ],
        )
        return render_action(request, self, job, page, reverse("admin:payflow_jobrun_changelist"))

    def pause_view(self, request, job):
        return self._pause_page(request, job, paused=True)

    def resume_view(self, request, job):
        return self._pause_page(request, job, paused=False)

    def _pause_page(self, request, job: str, *, paused: bool):
        scheduled = {entry.name: entry for entry in scheduled_jobs()}.get(job)
        if scheduled is None:
            raise Http404("no such scheduled job")
        run = scheduled.last_run
        verb = "Pause" if paused else "Resume"
        page = ActionPage(
            title=f"{verb} the scheduled job {job}",
            form_class=ReasonForm,
            perform=lambda data: operations.operator_job_set_paused(
                job=job, paused=paused, reason=data["reason"]
            ),
            success=lambda _run: (
                f"{job} is paused: beat's runs of it are skipped until it is resumed."
                if paused
                else f"{job} is resumed: beat runs it again ({scheduled.every})."
            ),
            noun="job",
            summary=[
                ("job", job),
                ("task", scheduled.task),
                ("when", scheduled.every),
                ("last run", run.last_started_at if run and run.last_started_at else "never"),
                *(
                    [("paused", f"since {run.paused_at:%Y-%m-%d %H:%M} UTC by {run.paused_by}")]
                    if run and run.paused_at
                    else []
                ),
            ],
        )
        return render_action(request, self, job, page, reverse("admin:payflow_jobrun_changelist"))


def _label_starters(records) -> None:
    """``started_by_label`` on each record: "beat", an operator's user name, or "—"."""
    user_ids = {
        record.started_by.split(":", 1)[1]
        for record in records
        if record.started_by.startswith("user:")
    }
    names = {
        str(pk): name
        for pk, name in get_user_model()
        .objects.filter(pk__in=[pk for pk in user_ids if pk.isdigit()])
        .values_list("pk", "username")
    }
    for record in records:
        kind, _, actor = record.started_by.partition(":")
        if kind == "user":
            record.started_by_label = f"operator {names.get(actor, '#' + actor)}"
        else:
            record.started_by_label = record.started_by or "—"
