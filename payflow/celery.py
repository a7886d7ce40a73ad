"""The Celery application: worker and beat both start from here."""

import logging
import os
from collections.abc import Callable
from typing import Any

from celery import Celery, Task, signals

from payflow.logging import install_log_format
from payflow.platform import context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")

logger = logging.getLogger(__name__)


class ContextTask(Task):
    """Carries the audit context of whoever queued the task in its headers, and runs the
    task inside it, with the task id added. A task nobody queued (beat) acts as itself."""

    def apply_async(
        self,
        args=None,
        kwargs=None,
        task_id=None,
        producer=None,
        link=None,
        link_error=None,
        shadow=None,
        **options,
    ):
        headers = {**context.current().as_headers(), **(options.pop("headers", None) or {})}
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, headers=headers, **options
        )

    def __call__(self, *args, **kwargs):
        request_headers = payflow_headers(self.request)
        carried = context.AuditContext.from_headers(request_headers)
        if not carried.has_actor:
            carried = context.AuditContext(
                **{**carried.__dict__, **context.system_actor(f"task:{self.name}")}
            )
        job = request_headers.get("payflow_job")
        if job and _paused(job):
            logger.info("skipping beat's run of %s: the job is paused", job)
            return SKIPPED
        with context.replaced(carried), context.bind(task_id=self.request.id or ""):
            return super().__call__(*args, **kwargs)


def payflow_headers(request: Any) -> dict[str, Any]:
    """The ``payflow_*`` headers a task's message carried (the audit context, the beat
    job's name), wherever the Celery protocol put them on the request."""
    headers = dict(getattr(request, "headers", None) or {})
    headers.update({k: v for k, v in vars(request).items() if k.startswith("payflow_")})
    return headers


#: What a skipped run returns (beat's run of a paused job); such runs are not recorded.
SKIPPED = "paused"

#: Whether an operator paused a job: installed by ``payflow.jobs`` when the apps are ready
#: (it reads the database, which this module, loaded before Django is set up, cannot).
pause_check: Callable[[str], bool] | None = None


def _paused(job: str) -> bool:
    """Whether an operator paused ``job``; if that cannot be read, the run goes ahead (every
    job is safe to run, and a database outage will fail the run itself, visibly)."""
    if pause_check is None:
        logger.warning("no pause check is installed; running %s", job)
        return False
    try:
        return pause_check(job)
    except Exception:
        logger.warning("could not read whether %s is paused; running it", job, exc_info=True)
        return False


#: The relay's tasks (an operator's sweep by hand; nudges queued by an earlier version,
#: when they ran every second): their routine INFO lines (beat's "Sending due task", the
#: worker's "Received task" and "succeeded in") would be three a second. They
#: are shown only when the process logs at DEBUG (``--loglevel DEBUG``); their work shows
#: in the outbox metrics, and a failure still logs at WARNING or above.
QUIET_TASKS = frozenset({"outbox.relay_sweep", "outbox.relay_partitions", "outbox.relay_partition"})


class QuietFrequentTasks(logging.Filter):
    """Drops Celery's routine INFO records about ``QUIET_TASKS`` unless the process logs at
    DEBUG; nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        data = getattr(record, "data", None)  # the worker's trace and strategy pass it
        task = data.get("name") if isinstance(data, dict) else None
        if task is None and isinstance(record.args, tuple) and len(record.args) == 2:
            task = record.args[1]  # beat: ("Sending due task %s (%s)", entry, task)
        return task not in QUIET_TASKS


class RoundedRuntimes(logging.Filter):
    """Rounds a task's ``runtime`` to microseconds in Celery's "succeeded in" line. The
    full float (``0.24771754354597048``) is a 17-digit run that passes the Luhn check about
    one time in ten, and the PAN filter then masked the duration (``0.****…7048``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and isinstance(args.get("runtime"), float):
            record.args = {**args, "runtime": round(args["runtime"], 6)}
        return True


for _name in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
    logging.getLogger(_name).addFilter(QuietFrequentTasks())
# A logger's filters run before its handlers' (where the PAN filter is).
logging.getLogger("celery.app.trace").addFilter(RoundedRuntimes())


app = Celery("payflow", task_cls=ContextTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_pans_in_worker_logs(logger, *args, **kwargs):
    # Celery replaces the root logger's handlers in workers and beat: put the PAN filter
    # (and the log context, and the JSON format when chosen) back on its handlers.
    install_log_format(logger)
