"""The jobs page: when each job runs next, its last 20 runs and who started them, and
"run now" (an operator action: audited with its reason, queued after the commit, run by the
real worker).

Reproduced before: the page showed each job's latest run only, no next run, and no way to
run a job but pausing and resuming it."""

import datetime
import time

import pytest
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from payflow import jobs
from payflow.celery import app
from payflow.jobs import JOB_HISTORY, job_run_now_send, job_run_record, job_run_request
from payflow.models import JobRunRecord


def record(job="idempotency-purge", ok=True, at=None, started_by="beat"):
    job_run_record(
        job=job,
        task="payflow.idempotency_purge",
        started_at=at or timezone.now(),
        duration_seconds=0.25,
        ok=ok,
        error="" if ok else "boom",
        started_by=started_by,
    )


def test_the_last_runs_of_each_job_are_kept_newest_first(client, operator):
    start = timezone.now() - datetime.timedelta(hours=1)
    for minute in range(JOB_HISTORY + 5):
        record(at=start + datetime.timedelta(minutes=minute), ok=minute != JOB_HISTORY + 4)
    record(job="settlement")
    kept = JobRunRecord.objects.filter(job="idempotency-purge")
    assert kept.count() == JOB_HISTORY
    assert JobRunRecord.objects.filter(job="settlement").count() == 1
    client.force_login(operator)
    page = client.get("/admin/payflow/jobrun/").content.decode()
    history = page.split('id="history-idempotency-purge"', 1)[1].split("</details>", 1)[0]
    assert history.count('<tr class="job-run">') == JOB_HISTORY
    assert " open>" in history.split("\n", 1)[0]  # the last run failed: shown open
    newest = (start + datetime.timedelta(minutes=JOB_HISTORY + 4)).strftime("%Y-%m-%d %H:%M:%S")
    assert history.index(newest) < history.index(
        (start + datetime.timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    )


def test_each_job_shows_when_it_runs_next(client, operator, settings):
    from payflow.jobs import job_pause

    job_pause(job="settlement", by="olivia", reason="bank holiday")
    client.force_login(operator)
    page = client.get("/admin/payflow/jobrun/").content.decode()
    row = page.split('id="job-settlement"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="next-run">paused</td>' in row
    for name in ("outbox-purge", "audit-verify-full"):
        row = page.split(f'id="job-{name}"', 1)[1].split("</tr>", 1)[0]
        shown = row.split('<td class="next-run">', 1)[1].split("</td>", 1)[0]
        moment = datetime.datetime.strptime(shown, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.UTC)
        assert timezone.now() - datetime.timedelta(seconds=2) <= moment
        assert moment <= timezone.now() + datetime.timedelta(days=1)
        assert moment.second == 0  # a crontab fires on the minute


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)  # the worker reads what the request committed
def test_an_operator_runs_a_job_now_audited_and_the_worker_runs_it(
    client, operator, celery_worker_process
):
    client.force_login(operator)
    url = "/admin/payflow/jobrun/schedule/idempotency-purge/run/"
    form = client.get(url).content.decode()
    assert "Run the scheduled job idempotency-purge now" in form
    assert client.post(url, {"reason": "  "}).status_code == 400  # a reason is required
    done = client.post(url, {"reason": "stale keys after the incident"})
    assert done.status_code == 302, done.content.decode()
    entry = AuditEntry.objects.get(event_type="operator.job_run_now")
    assert entry.revealed["reason"] == "stale keys after the incident"
    assert entry.revealed["actor"]["label"] == "olivia"
    deadline = time.monotonic() + 60
    while not JobRunRecord.objects.filter(job="idempotency-purge").exists():
        assert time.monotonic() < deadline, "the worker did not run the job"
        time.sleep(0.2)
    run = JobRunRecord.objects.get(job="idempotency-purge")
    assert (run.status, run.started_by) == ("ok", f"user:{operator.pk}")
    page = client.get("/admin/payflow/jobrun/").content.decode()
    assert '<td class="started-by">operator olivia</td>' in page


@pytest.mark.django_db(transaction=True)  # a run is queued after the commit, outside it
def test_a_run_now_the_broker_refuses_is_said_plainly(client, operator, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(app, "send_task", refuse)
    client.force_login(operator)
    response = client.post(
        "/admin/payflow/jobrun/schedule/idempotency-purge/run/", {"reason": "try it"}
    )
    assert response.status_code == 400
    assert (
        "the run of idempotency-purge was not queued: the message broker did not take it "
        "(ConnectionRefusedError)" in response.content.decode()
    )


def test_run_now_refuses_unknown_jobs_and_auditors(client, operator, auditor):
    client.force_login(operator)
    assert client.get("/admin/payflow/jobrun/schedule/no-such-job/run/").status_code == 404
    client.force_login(auditor)
    assert client.get("/admin/payflow/jobrun/schedule/settlement/run/").status_code == 403
    page = client.get("/admin/payflow/jobrun/").content.decode()
    assert "Run now…" not in page


def test_a_run_is_never_queued_from_inside_a_transaction(db):
    with transaction.atomic(), pytest.raises(RuntimeError, match="outside any database"):
        job_run_now_send(job_run_request("settlement"))
    with pytest.raises(jobs.JobPauseRefused, match="no scheduled job"):
        job_run_request("nope")
