"""A suspended merchant (issue 13, item 7): no new payments, captures or payouts; cancels
and refunds still allowed (they release a hold or give money back to cardholders), and
audited like any change.

Reproduced before the fix: a suspended merchant captured an authorized payment (200).
"""

import datetime

from django.utils import timezone

from audit.models import AuditEntry
from ledger import ids
from ledger.models import AcquirerCommand, Transaction
from ledger.services.merchants import merchant_suspend
from ledger.services.settlement import settlement_run
from tests.payflow.api.conftest import assert_error, create_payment


def test_a_suspended_merchant_cannot_capture_but_can_cancel_and_refund(api, merchant):
    authorized = create_payment(api, amount=3_000, capture=False).json()
    to_cancel = create_payment(api, amount=2_000, capture=False).json()
    captured = create_payment(api, amount=5_000).json()
    merchant_suspend(merchant=merchant)
    rows_before = AuditEntry.objects.count()
    last_row = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()

    # capture: refused, nothing written
    capture = api.post(f"/v1/payments/{authorized['id']}/capture", {}, format="json")
    error = assert_error(capture, 403, "merchant_inactive")
    assert error["type"] == "permission_error"
    payment = Transaction.objects.get(pk=ids.decode("payment", authorized["id"]))
    assert (payment.status, payment.version) == ("authorized", authorized["version"])
    assert not AcquirerCommand.objects.filter(transaction=payment).exists()
    assert AuditEntry.objects.count() == rows_before

    # cancel and refund: allowed, audited with the API key as actor
    cancel = api.post(f"/v1/payments/{to_cancel['id']}/cancel", {}, format="json")
    assert (cancel.status_code, cancel.json()["status"]) == (200, "cancelled")
    refund = api.post(f"/v1/payments/{captured['id']}/refunds", {"amount": 1_000}, format="json")
    assert (refund.status_code, refund.json()["status"]) == (201, "refunded")
    new_rows = AuditEntry.objects.filter(id__gt=last_row)
    assert {row.actor_type for row in new_rows} == {"api_key"}
    assert "payment.cancelled" in {row.event_type for row in new_rows}
    assert "refund.succeeded" in {row.event_type for row in new_rows}


def test_a_suspended_merchant_cannot_create_payments_or_payouts(api, merchant):
    create_payment(api, amount=5_000)
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))
    merchant_suspend(merchant=merchant)
    assert_error(create_payment(api), 403, "merchant_inactive")
    payout = api.post("/v1/payouts", {"amount": 1_000, "currency": "EUR"}, format="json")
    assert_error(payout, 403, "merchant_inactive")
    assert Transaction.objects.filter(type="payout").count() == 0
