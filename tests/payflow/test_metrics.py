"""/metrics after real activity: payments through the API, the relay, a verification, jobs."""

import datetime
import json
import logging
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from audit.tasks import verify
from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from outbox import relay
from outbox.models import EventStatus, OutboxEvent
from payflow.logging import JsonFormatter, LogContextFilter, PanRedactingFilter
from payflow.metrics import KNOWN_METHODS
from payflow.platform import context
from payflow.tasks import idempotency_purge

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def scrape(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def api(db):
    merchant = merchant_create(name="Metrics Shop")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(merchant=merchant).secret}")
    return client


@pytest.mark.kafka
@pytest.mark.django_db
def test_metrics_expose_the_figures_after_real_payments(client, api, kafka_settings, settings):
    settings.KAFKA_TOPIC_PREFIX = f"metrics{uuid.uuid4().hex[:12]}."
    relay.reset_producer()
    before = scrape(client)
    route = "v1/payments"

    # given three payments through the API, two captured and one only authorized
    for capture in (True, True, False):
        response = api.post(
            "/v1/payments",
            {"amount": 2500, "currency": "EUR", "card": CARD, "capture": capture},
            format="json",
        )
        assert response.status_code == 201, response.content
    # the newest event goes dead (so it holds back no later event of its aggregate)
    dead = OutboxEvent.objects.order_by("-id").first()
    OutboxEvent.objects.filter(pk=dead.pk).update(status=EventStatus.DEAD)
    pending = OutboxEvent.objects.filter(status=EventStatus.PENDING).count()
    backlog = scrape(client)
    published = sum(report.published for report in relay.relay_all())
    verify.apply(kwargs={"incremental": False})
    idempotency_purge.apply()
    settings.AUDIT_ARCHIVE_AFTER = datetime.timedelta(0)  # every row is "old"
    from payflow.jobs import job_pause

    job_pause(job="settlement", by="olivia", reason="bank holiday")
    after = scrape(client)
    relay.reset_producer()

    # then
    assert (
        value(after, "payflow_http_requests_total", method="POST", route=route, status="201")
        - (value(before, "payflow_http_requests_total", method="POST", route=route, status="201"))
        == 3
    )
    assert (
        value(after, "payflow_http_request_duration_seconds_count", method="POST", route=route) >= 3
    )
    assert value(after, "payflow_payments", status="captured") == 2
    assert value(after, "payflow_payments", status="authorized") == 1
    assert value(after, "payflow_payments", status="failed") == 0
    assert value(backlog, "payflow_outbox_events", status="pending") == pending
    assert value(backlog, "payflow_outbox_oldest_pending_age_seconds") > 0
    assert value(after, "payflow_outbox_events", status="dead") == 1
    assert value(after, "payflow_outbox_events", status="pending") == 0
    assert published == pending
    assert (
        value(after, "payflow_outbox_published_total")
        - value(before, "payflow_outbox_published_total")
        == published
    )
    for reason in ("deadlock_or_certification_failure", "lock_wait_timeout"):
        assert ("payflow_db_transaction_retries_total", (("reason", reason),)) in after
    assert ("payflow_db_transaction_retries_exhausted_total", ()) in after
    assert value(after, "payflow_audit_verification_ok") == 1
    assert 0 <= value(after, "payflow_audit_verification_age_seconds") < 60
    from audit.models import AuditEntry

    assert value(after, "payflow_audit_archive_backlog_rows") == AuditEntry.objects.count() > 0
    assert value(before, "payflow_audit_archive_backlog_rows") == 0
    assert value(after, "payflow_job_runs_total", job="audit-verify-full") == 1
    assert value(after, "payflow_job_last_run_success", job="idempotency-purge") == 1
    assert 0 < value(after, "payflow_job_last_duration_seconds", job="idempotency-purge") < 60
    assert value(after, "payflow_job_paused", job="settlement") == 1
    assert after[("payflow_job_paused", (("job", "idempotency-purge"),))] == 0
    assert ("payflow_job_last_run_success", (("job", "settlement"),)) not in after  # never ran
    assert value(after, "payflow_metrics_collect_errors", part="payments") == 0


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")


@pytest.mark.django_db
def test_without_a_token_metrics_answer_internal_addresses_only(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_json_logs_carry_request_id_actor_and_merchant_and_never_a_pan():
    handler = logging.Handler()
    handler.addFilter(LogContextFilter())
    handler.addFilter(PanRedactingFilter())
    handler.setFormatter(JsonFormatter())
    lines = []
    handler.emit = lambda record: lines.append(handler.format(record))
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    try:
        audit = context.AuditContext(
            actor_type="api_key", actor_id="k1", request_id="req-12345678", merchant_id="m1"
        )
        with context.replaced(audit):
            logger.warning("card %s declined", "4242 4242 4242 4242")
    finally:
        logger.removeHandler(handler)
    document = json.loads(lines[0])
    assert document["message"] == "card **** **** **** 4242 declined"
    assert (document["request_id"], document["actor"], document["merchant_id"]) == (
        "req-12345678",
        "api_key:k1",
        "m1",
    )
    assert document["level"] == "WARNING"


def test_every_configured_handler_has_the_pan_filter_and_the_log_context(settings):
    for handler in settings.LOGGING["handlers"].values():
        assert handler["filters"] == ["log_context", "pan_redaction"]


@pytest.mark.django_db
def test_invented_http_methods_share_one_metric_series(client, settings):
    # Reproduced before: 30 requests with invented methods made 234 new series.
    settings.METRICS_TOKEN = ""

    def series():
        return {key for key in scrape(client) if key[0].startswith("payflow_http_request")}

    for index in range(30):
        client.generic(f"BREW{index}", "/v1/ping")
    methods = {dict(labels)["method"] for _name, labels in series()}
    assert "other" in methods
    assert methods <= KNOWN_METHODS | {"other"}, methods
