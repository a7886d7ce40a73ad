"""Prometheus metrics at ``/metrics``.

Two kinds of figures:

* **Process counters** (requests and their latency, Galera retries, relay throughput):
  ``prometheus_client`` counters and histograms incremented where things happen. Each
  process has its own. With ``PROMETHEUS_MULTIPROC_DIR`` set (to an empty directory shared
  by the gunicorn workers and Celery processes of one host, before they start), every
  process writes its values there and ``/metrics`` sums them (prometheus_client's
  multiprocess mode); without it, ``/metrics`` shows the answering process only.
* **State gauges** computed at scrape time from the database by ``StateCollector`` with a
  few cheap queries (payments by status over a recent window, outbox backlog and lag, last
  verification, archive backlog, scheduled jobs). The database is shared, so every web
  process answers the same: no aggregation needed.

Access: with ``METRICS_TOKEN`` set, only ``Authorization: Bearer <token>``; otherwise only
clients whose address is in ``METRICS_ALLOWED_NETWORKS`` (default loopback). Anyone else
gets 404, as if there were no such page.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audit.archive import archive_backlog
from audit.models import Checkpoint, VerificationRun
from audit.sequencer import sequencer_lag_seconds
from ledger.models import Transaction, TransactionStatus, TransactionType
from outbox.services import outbox_backlog
from payflow.models import JobRun, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "payflow_http_requests_total",
    "HTTP requests answered, by method, URL route (the pattern, not the path) and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "payflow_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and URL route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.5, 5.0, 10.0),
)


#: The methods a label may name; any other (invented) method is counted as "other", so a
#: client cannot create label series at will.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str | None) -> str:
    return method if method in KNOWN_METHODS else "other"


class MetricsMiddleware:
    """Count every request and time it, labelled by its URL pattern (bounded cardinality:
    ``v1/payments/<str:payment_id>``, never the id itself) and its method (one of
    ``KNOWN_METHODS`` or ``other``)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match is not None else "unmatched"
        method = method_label(request.method)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
        return response


# --- state gauges ---------------------------------------------------------------------


def _age(moment: datetime.datetime | None, now: datetime.datetime) -> float:
    return (now - moment).total_seconds() if moment is not None else float("nan")


def payment_metrics(now: datetime.datetime) -> Iterator[Metric]:
    window = settings.METRICS_PAYMENTS_WINDOW_SECONDS
    counts = dict(
        Transaction.objects.filter(
            type=TransactionType.PAYMENT,
            initiated_at__gte=now - datetime.timedelta(seconds=window),
        )
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    gauge = GaugeMetricFamily(
        "payflow_payments",
        f"Payments initiated in the last {window} s (METRICS_PAYMENTS_WINDOW_SECONDS), "
        "by current status.",
        labels=["status"],
    )
    for status in TransactionStatus.values:
        gauge.add_metric([status], counts.get(status, 0))
    yield gauge


def outbox_metrics(now: datetime.datetime) -> Iterator[Metric]:
    backlog = outbox_backlog()
    events = GaugeMetricFamily(
        "payflow_outbox_events", "Outbox events by status (the backlog).", labels=["status"]
    )
    events.add_metric(["pending"], backlog.pending)
    events.add_metric(["dead"], backlog.dead)
    events.add_metric(["published"], backlog.published or 0)  # counted: count_published is on
    yield events
    yield GaugeMetricFamily(
        "payflow_outbox_oldest_pending_age_seconds",
        "Age of the oldest event waiting for Kafka (the relay's lag); 0 when none waits.",
        value=backlog.oldest_pending_age_seconds or 0.0,
    )


def webhook_metrics(now: datetime.datetime) -> Iterator[Metric]:
    """What merchants are owed: deliveries by status, the oldest one due and not yet
    delivered (the dispatcher's lag, or a receiver failing), disabled endpoints."""
    waiting = (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.FAILED)
    counts = dict(
        WebhookDelivery.objects.filter(status__in=waiting)  # the (status, …) index
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    deliveries = GaugeMetricFamily(
        "payflow_webhook_deliveries",
        "Webhook deliveries pending, and failed for good (kept WEBHOOK_DELIVERY_RETENTION).",
        labels=["status"],
    )
    for status in waiting:
        deliveries.add_metric([status], counts.get(status, 0))
    yield deliveries
    oldest = (
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    yield GaugeMetricFamily(
        "payflow_webhook_oldest_pending_age_seconds",
        "Age of the oldest webhook delivery not yet delivered; 0 when none waits.",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )
    yield GaugeMetricFamily(
        "payflow_webhook_endpoints_disabled",
        "Webhook endpoints disabled after failing for the whole retry span (not deleted).",
        value=WebhookEndpoint.objects.filter(status=WebhookEndpoint.Status.DISABLED, deleted=False)
        .exclude(disabled_reason="disabled by the merchant")
        .count(),
    )


def audit_metrics(now: datetime.datetime) -> Iterator[Metric]:
    last = (
        VerificationRun.objects.filter(status=VerificationRun.DONE)
        .order_by("-finished_at")
        .only("ok", "finished_at", "incremental")
        .first()
    )
    yield GaugeMetricFamily(
        "payflow_audit_verification_ok",
        "1 if the last finished verification found the trail intact, 0 if it found a break, "
        "NaN if none finished yet.",
        value=float("nan") if last is None else float(bool(last.ok)),
    )
    yield GaugeMetricFamily(
        "payflow_audit_verification_age_seconds",
        "Seconds since the last verification finished (NaN if none).",
        value=_age(last.finished_at if last else None, now),
    )
    checkpoint = Checkpoint.objects.order_by("-size").only("created_at").first()
    yield GaugeMetricFamily(
        "payflow_audit_checkpoint_age_seconds",
        "Seconds since the last signed checkpoint (NaN if none).",
        value=_age(checkpoint.created_at if checkpoint else None, now),
    )
    yield GaugeMetricFamily(
        "payflow_audit_sequencer_lag_seconds",
        "How long the oldest audit entry not sealed by a checkpoint has waited (0: all sealed).",
        value=sequencer_lag_seconds(now),
    )
    yield GaugeMetricFamily(
        "payflow_audit_archive_backlog_rows",
        "Audit rows older than AUDIT_ARCHIVE_AFTER still in the database (archiving is due).",
        value=archive_backlog(now),
    )


def job_metrics(now: datetime.datetime) -> Iterator[Metric]:
    last_run = GaugeMetricFamily(
        "payflow_job_last_run_timestamp_seconds", "When the job's last run started.", labels=["job"]
    )
    duration = GaugeMetricFamily(
        "payflow_job_last_duration_seconds", "How long the job's last run took.", labels=["job"]
    )
    succeeded = GaugeMetricFamily(
        "payflow_job_last_run_success", "1 if the job's last run succeeded, else 0.", labels=["job"]
    )
    last_success = GaugeMetricFamily(
        "payflow_job_last_success_timestamp_seconds",
        "When the job last succeeded.",
        labels=["job"],
    )
    runs = CounterMetricFamily("payflow_job_runs", "Runs of the job recorded.", labels=["job"])
    failures = CounterMetricFamily(
        "payflow_job_failures", "Failed runs of the job.", labels=["job"]
    )
    paused = GaugeMetricFamily(
        "payflow_job_paused", "1 while an operator has the job paused, else 0.", labels=["job"]
    )
    recorded = {run.job: run for run in JobRun.objects.all()}
    for job in settings.CELERY_BEAT_SCHEDULE:
        paused.add_metric([job], 1.0 if job in recorded and recorded[job].paused_at else 0.0)
    for run in recorded.values():
        labels = [run.job]
        if run.last_started_at:
            last_run.add_metric(labels, run.last_started_at.timestamp())
        if run.last_duration_seconds is not None:
            duration.add_metric(labels, run.last_duration_seconds)
        if run.last_status:  # a job paused before it ever ran has no last run
            succeeded.add_metric(labels, 1.0 if run.last_status == JobRun.OK else 0.0)
        if run.last_success_at:
            last_success.add_metric(labels, run.last_success_at.timestamp())
        runs.add_metric(labels, run.runs)
        failures.add_metric(labels, run.failures)
    yield from (last_run, duration, succeeded, last_success, runs, failures, paused)


PARTS = {
    "payments": payment_metrics,
    "outbox": outbox_metrics,
    "audit": audit_metrics,
    "jobs": job_metrics,
    "webhooks": webhook_metrics,
}


class StateCollector(Collector):
    """The database-derived gauges, computed at each scrape. A part whose query fails is
    left out and reported in ``payflow_metrics_collect_errors`` (never a failed scrape)."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        errors = GaugeMetricFamily(
            "payflow_metrics_collect_errors",
            "1 for a part of the state gauges that could not be computed at this scrape.",
            labels=["part"],
        )
        for name, part in PARTS.items():
            try:
                metrics = list(part(now))
            except Exception as exc:
                logger.warning("metrics part %s failed: %s", name, exc)
                errors.add_metric([name], 1.0)
                continue
            errors.add_metric([name], 0.0)
            yield from metrics
        yield errors


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        return hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.METRICS_ALLOWED_NETWORKS
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition: process counters, then the state gauges."""
    if not _allowed(request):
        raise Http404
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    body = generate_latest(_process_registry()) + generate_latest(state)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
