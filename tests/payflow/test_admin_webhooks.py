"""Webhooks in the admin: why an endpoint was disabled, every attempt of a delivery,
enabling and resending as audited operator actions; the secret never on a page."""

from audit.models import AuditEntry
from ledger.services.merchants import merchant_create
from outbox.models import OutboxEvent
from payflow.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payflow.webhooks import dispatch, endpoints
from tests.ledger.conftest import pay


def _disabled_endpoint_with_a_failed_delivery():
    merchant = merchant_create(name="Admin Hooks")
    made = endpoints.webhook_endpoint_create(
        merchant=merchant, livemode=False, url="http://127.0.0.1:9/h", enabled_events=["*"]
    )
    pay(merchant, amount=1_000)
    dispatch.owe(list(OutboxEvent.objects.values_list("id", flat=True)))
    delivery = WebhookDelivery.objects.filter(endpoint=made.endpoint).first()
    dispatch.claim(delivery)
    dispatch.record(delivery, dispatch.Answer(502, 12, "bad gateway"))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    endpoints.webhook_endpoint_disable(
        endpoint_id=made.endpoint.pk, reason="deliveries failed for 3 days (last: HTTP 502)"
    )
    return made, delivery


def test_an_operator_sees_why_an_endpoint_was_disabled_and_enables_it(client, operator):
    made, _ = _disabled_endpoint_with_a_failed_delivery()
    client.force_login(operator)
    listing = client.get("/admin/payflow/webhookendpoint/").content.decode()
    assert "deliveries failed for 3 days (last: HTTP 502)" in listing
    page = client.get(f"/admin/payflow/webhookendpoint/{made.endpoint.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert made.secret not in body
    assert "secret_sealed" not in body
    assert f"/admin/payflow/webhookendpoint/{made.endpoint.pk}/enable/" in body
    url = f"/admin/payflow/webhookendpoint/{made.endpoint.pk}/enable/"
    assert client.post(url, {"reason": ""}).status_code == 400  # a reason is required
    done = client.post(url, {"reason": "the merchant fixed their server"})
    assert done.status_code == 302, done.content.decode()
    endpoint = WebhookEndpoint.objects.get(pk=made.endpoint.pk)
    assert (endpoint.status, endpoint.disabled_reason) == ("enabled", "")
    assert AuditEntry.objects.filter(event_type="operator.webhook_endpoint_enable").count() == 1
    again = client.post(url, {"reason": "twice"})
    assert again.status_code == 400
    assert "enabled already" in again.content.decode()


def test_an_operator_reads_every_attempt_and_resends_the_event(client, operator):
    _, delivery = _disabled_endpoint_with_a_failed_delivery()
    client.force_login(operator)
    page = client.get(f"/admin/payflow/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "HTTP 502" in page
    assert "bad gateway" in page
    done = client.post(
        f"/admin/payflow/webhookdelivery/{delivery.pk}/resend/", {"reason": "asked by merchant"}
    )
    assert done.status_code == 302, done.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.first_attempt_at) == ("pending", None)
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1  # history kept
    assert AuditEntry.objects.filter(event_type="operator.webhook_resend").count() == 1


def test_an_auditor_reads_deliveries_but_cannot_resend(client, auditor):
    _, delivery = _disabled_endpoint_with_a_failed_delivery()
    client.force_login(auditor)
    assert client.get("/admin/payflow/webhookdelivery/").status_code == 200
    refused = client.post(f"/admin/payflow/webhookdelivery/{delivery.pk}/resend/", {"reason": "no"})
    assert refused.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "failed"
