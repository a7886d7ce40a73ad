"""The operators' admin through Django's test client: roles, search, actions, refusals."""

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEntry
from audit.objects import history_types
from audit.verify import verify_log
from ledger import ids
from ledger.models import ApiKey, Merchant, Transaction
from ledger.services.api_keys import api_key_create
from ledger.services.refunds import refund_create
from outbox.models import EventStatus, OutboxEvent
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant(db):
    from ledger.services.merchants import merchant_create

    return merchant_create(name="Boulangerie Martin")


def history(obj_type, obj_id, **filters):
    return AuditEntry.objects.filter(
        object_type__in=history_types(obj_type), object_id=str(obj_id), **filters
    )


def recorded(obj_type, obj_id, *names, **filters):
    """(event_type, and each of ``names`` from the entry's bytes) per entry, oldest first;
    ``actor_label``/``actor_type`` read the entry's actor."""
    found = []
    for entry in history(obj_type, obj_id, **filters).order_by("id"):
        fields = entry.revealed
        values = [entry.event_type]
        for name in names:
            values.append(fields["actor"][name[6:]] if name.startswith("actor_") else fields[name])
        found.append(tuple(values))
    return found


def test_the_roles_migration_creates_both_groups_with_view_only_for_auditors():
    auditor = Group.objects.get(name="auditor")
    operator = Group.objects.get(name="operator")
    assert auditor.permissions.exists()
    assert not auditor.permissions.exclude(codename__startswith="view_").exists()
    assert operator.permissions.filter(codename="change_transaction").exists()
    assert not operator.permissions.filter(codename="view_checkpoint").exists()
    assert not operator.permissions.filter(codename__startswith="delete_").exists()


def test_an_operator_finds_a_payment_by_its_public_id_and_by_external_reference(
    client, operator, merchant
):
    payment = pay(merchant, amount=4200, external_reference="order-77")
    other = pay(merchant, amount=1000, external_reference="order-78")
    client.force_login(operator)
    url = "/admin/ledger/transaction/"

    by_id = client.get(url, {"q": ids.encode("payment", payment.pk)})
    by_reference = client.get(url, {"q": "order-77"})
    malformed = client.get(url, {"q": "pay_nothex"})

    assert by_id.status_code == by_reference.status_code == malformed.status_code == 200
    assert ids.encode("payment", payment.pk) in by_id.content.decode()
    assert ids.encode("payment", other.pk) not in by_id.content.decode()
    assert ids.encode("payment", payment.pk) in by_reference.content.decode()
    assert "0 transactions" in malformed.content.decode()


def test_a_payment_page_is_read_only_and_shows_its_audit_rows_and_events(
    client, operator, merchant
):
    payment = pay(merchant, amount=4200)
    client.force_login(operator)

    page = client.get(f"/admin/ledger/transaction/{payment.pk}/change/")
    post = client.post(f"/admin/ledger/transaction/{payment.pk}/change/", {"amount": 1})

    body = page.content.decode()
    assert page.status_code == 200
    assert 'name="amount"' not in body  # no editable money field
    assert "payment.captured" in body
    assert "id='audit-history'" in body
    assert "id='outbox-history'" in body
    assert "transactions.completed" in body
    assert post.status_code == 403
    assert Transaction.objects.get(pk=payment.pk).amount == 4200


def test_an_operator_refund_is_audited_with_the_operator_and_the_reason(client, operator, merchant):
    payment = pay(merchant, amount=5000)
    client.force_login(operator)
    url = f"/admin/ledger/transaction/{payment.pk}/refund/"

    response = client.post(
        url, {"amount": "12.00", "reason": "customer returned a pair", "expected_version": "3"}
    )

    assert response.status_code == 302, response.content.decode()
    payment.refresh_from_db()
    assert payment.refunded_amount == 1200
    rows = [
        row
        for row in recorded("ledger.transaction", payment.pk, "actor_label", "reason", "actor_type")
        if row[1] == "olivia"
    ]
    assert sorted(row[0] for row in rows) == [
        "operator.refund_create",
        "payment.partially_refunded",
    ]
    assert {row[2] for row in rows} == {"customer returned a pair"}
    assert {row[3] for row in rows} == {"user"}
    refund = Transaction.objects.get(parent=payment)
    assert recorded("ledger.transaction", refund.pk, "actor_label")[0][1] == "olivia"


def test_an_operator_action_leaves_the_payment_changeable_and_the_log_verified(
    client, operator, merchant
):
    # Reproduced: the action's row was chained on the payment itself, after the refund's
    # own entry, so the payment's audit_hash no longer named its latest entry: the next
    # change forked the chain (IntegrityError 1062) and verification said row_unaudited.
    payment = pay(merchant, amount=5000)
    client.force_login(operator)
    response = client.post(
        f"/admin/ledger/transaction/{payment.pk}/refund/",
        {"amount": "12", "reason": "customer returned a pair", "expected_version": "3"},
    )
    assert response.status_code == 302, response.content.decode()

    # when: the merchant refunds again through the service, after the operator's action
    payment.refresh_from_db()
    refund_create(payment=payment, amount=300)

    # then: both refunds are on the payment, and the whole log verifies with its rows
    payment.refresh_from_db()
    assert payment.refunded_amount == 1500
    sequence()
    report = verify_log()
    assert report.ok, [str(problem) for problem in report.breaks]
    operator_rows = AuditEntry.objects.filter(
        object_type="operator:ledger.transaction", object_id=str(payment.pk)
    )
    assert [row.event_type for row in operator_rows] == ["operator.refund_create"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": "12.505", "reason": "x"}, "amount in EUR with at most 2 decimals, e.g. 12.50"),
        ({"amount": "-3", "reason": "x"}, "amount in EUR with at most 2 decimals"),
        ({"amount": "1,000.00", "reason": "x"}, "amount in EUR with at most 2 decimals"),
        ({"amount": "0.00", "reason": "x"}, "amount must be greater than zero"),
        ({"amount": "9" * 21, "reason": "x"}, "at most 20 characters"),
        ({"amount": "1.00", "reason": "   "}, "This field is required"),
        ({"amount": "9999.99", "reason": "too much"}, "exceeds what remains refundable"),
        ({"amount": "1.00", "reason": "x", "expected_version": "abc"}, "reopen it"),
    ],
)
def test_bad_input_in_a_refund_gives_a_clear_message_and_changes_nothing(
    client, operator, merchant, data, message
):
    payment = pay(merchant, amount=5000)
    client.force_login(operator)
    response = client.post(f"/admin/ledger/transaction/{payment.pk}/refund/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == 0
    assert not history("ledger.transaction", payment.pk, actor_type="user").exists()


def test_a_refund_of_a_payment_changed_since_it_was_opened_is_refused(client, operator, merchant):
    # given an operator who opened the refund page at version 3
    payment = pay(merchant, amount=5000)
    client.force_login(operator)
    opened = client.get(f"/admin/ledger/transaction/{payment.pk}/refund/")
    assert 'name="expected_version" value="3"' in opened.content.decode()
    # when the merchant refunds through the API meanwhile
    refund_create(payment=payment, amount=100)
    response = client.post(
        f"/admin/ledger/transaction/{payment.pk}/refund/",
        {"amount": "2.00", "reason": "goodwill", "expected_version": "3"},
    )
    # then
    assert response.status_code == 400
    assert "this payment changed since you opened it" in response.content.decode().lower()
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == 100
    assert not history("ledger.transaction", payment.pk, actor_type="user").exists()


def test_capture_cancel_and_chargeback_call_the_ledger_services(client, operator, merchant):
    client.force_login(operator)
    to_capture = pay(merchant, amount=3000, capture=False)
    to_cancel = pay(merchant, amount=3000, capture=False)
    to_charge_back = pay(merchant, amount=3000)
    base = "/admin/ledger/transaction"

    captured = client.post(
        f"{base}/{to_capture.pk}/capture/",
        {"amount": "25.00", "reason": "phone order", "expected_version": "2"},
    )
    cancelled = client.post(
        f"{base}/{to_cancel.pk}/cancel/", {"reason": "duplicate", "expected_version": "2"}
    )
    charged_back = client.post(
        f"{base}/{to_charge_back.pk}/chargeback/",
        {"amount": "", "reason": "network case 123", "expected_version": "3"},
    )

    assert captured.status_code == cancelled.status_code == charged_back.status_code == 302
    assert Transaction.objects.get(pk=to_capture.pk).captured_amount == 2500
    assert Transaction.objects.get(pk=to_cancel.pk).status == "cancelled"
    assert Transaction.objects.get(pk=to_charge_back.pk).charged_back_amount == 3000
    assert recorded("ledger.transaction", to_cancel.pk, "reason", event_type="payment.cancelled")[
        0
    ][1]
    refused = client.post(
        f"{base}/{to_cancel.pk}/capture/", {"reason": "again", "expected_version": "3"}
    )
    assert refused.status_code == 400
    assert "Refused" in refused.content.decode()


def test_an_auditor_sees_transactions_but_cannot_act_on_them(client, auditor, merchant):
    payment = pay(merchant, amount=5000)
    client.force_login(auditor)

    page = client.get(f"/admin/ledger/transaction/{payment.pk}/change/")
    refund = client.post(
        f"/admin/ledger/transaction/{payment.pk}/refund/",
        {"amount": "100", "reason": "x", "expected_version": "3"},
    )

    assert page.status_code == 200
    assert "/refund/" not in page.content.decode()
    assert refund.status_code == 403
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == 0


def test_nobody_edits_or_deletes_an_audit_row_through_the_admin(client, superuser, merchant):
    entry = AuditEntry.objects.filter(object_id=str(merchant.pk)).get()
    client.force_login(superuser)
    base = f"/admin/audit/auditentry/{entry.pk}"

    view = client.get(f"{base}/change/")
    change = client.post(f"{base}/change/", {"reason": "edited"})
    delete = client.post(f"{base}/delete/", {"post": "yes"})
    add = client.get("/admin/audit/auditentry/add/")
    bulk = client.post(
        "/admin/audit/auditentry/", {"action": "delete_selected", "_selected_action": [entry.pk]}
    )

    assert view.status_code == 200
    assert 'name="reason"' not in view.content.decode()
    assert change.status_code == delete.status_code == add.status_code == 403
    assert bulk.status_code == 200  # the list again: delete_selected is no action here
    assert bytes(AuditEntry.objects.get(pk=entry.pk).body) == bytes(entry.body)


def test_card_tokens_show_brand_last4_and_expiry_only(client, operator, merchant):
    payment = pay(merchant, amount=1000)
    token = payment.card_token
    client.force_login(operator)
    body = client.get(f"/admin/ledger/cardtoken/{token.pk}/change/").content.decode()
    listing = client.get("/admin/ledger/cardtoken/").content.decode()
    for text in (body, listing):
        assert "visa •••• 4242" in text
        assert token.fingerprint not in text
        assert "4242424242424242" not in text
    assert "12/2034" in body


def test_an_operator_creates_a_merchant_issues_a_key_once_and_revokes_it(client, operator):
    client.force_login(operator)
    bad = client.post(
        "/admin/ledger/merchant/add/",
        {"name": "", "default_currency": "XXX", "settlement_delay_days": "99", "reason": ""},
    )
    created = client.post(
        "/admin/ledger/merchant/add/",
        {"name": "Fromagerie", "default_currency": "EUR", "settlement_delay_days": "2",
         "reason": "signed contract 42"},
    )  # fmt: skip
    merchant = Merchant.objects.get(name="Fromagerie")
    issued = client.post(
        f"/admin/ledger/merchant/{merchant.pk}/issue-key/",
        {"name": "web shop", "mode": "test", "reason": "onboarding"},
    )
    key = ApiKey.objects.get(merchant=merchant)
    revoked = client.post(f"/admin/ledger/apikey/{key.pk}/revoke/", {"reason": "leaked"})
    again = client.post(f"/admin/ledger/apikey/{key.pk}/revoke/", {"reason": "leaked"})

    assert bad.status_code == 400
    assert "Select a valid choice" in bad.content.decode()
    assert "Ensure this value is less than or equal to 60" in bad.content.decode()
    assert created.status_code == 302
    secret = issued.content.decode().split('id="api-key-secret">')[1].split("<")[0]
    assert secret.startswith("sk_test_")
    assert "no-store" in issued["Cache-Control"]
    assert client.get(f"/admin/ledger/apikey/{key.pk}/change/").content.decode().count(secret) == 0
    assert revoked.status_code == 302
    assert not ApiKey.objects.get(pk=key.pk).is_active
    assert again.status_code == 400
    assert "already revoked" in again.content.decode()
    assert recorded("ledger.apikey", key.pk, "reason") == [
        ("api_key.created", "onboarding"),
        ("api_key.revoked", "leaked"),
        ("operator.api_key_revoke", "leaked"),
    ]


def test_requeueing_a_dead_event_is_audited_with_the_operator_and_reason(
    client, operator, merchant
):
    payment = pay(merchant, amount=1000)
    event = OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).first()
    OutboxEvent.objects.filter(pk=event.pk).update(status=EventStatus.DEAD, attempts=10)
    client.force_login(operator)

    listing = client.get("/admin/outbox/outboxevent/", {"status__exact": "dead"})
    done = client.post(f"/admin/outbox/outboxevent/{event.pk}/requeue/", {"reason": "fixed schema"})
    again = client.post(f"/admin/outbox/outboxevent/{event.pk}/requeue/", {"reason": "twice"})

    assert listing.status_code == 200
    assert "<strong>1</strong> dead" in listing.content.decode()
    assert done.status_code == 302
    assert OutboxEvent.objects.get(pk=event.pk).status == EventStatus.PENDING
    assert again.status_code == 400
    assert "not dead" in again.content.decode()
    assert recorded("outbox.outboxevent", event.pk, "actor_label", "reason") == [
        ("operator.outbox_requeue", "olivia", "fixed schema")
    ]


def test_the_beat_schedule_is_visible_to_operators_with_every_job(client, operator, settings):
    client.force_login(operator)
    body = client.get("/admin/payflow/jobrun/").content.decode()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert f'id="job-{name}"' in body
        assert entry["task"] in body


def test_an_operator_pauses_and_resumes_a_job_with_a_reason_and_it_is_audited(
    client, operator, auditor
):
    from payflow.models import JobRun

    client.force_login(operator)
    listing = client.get("/admin/payflow/jobrun/").content.decode()
    assert '/admin/payflow/jobrun/schedule/settlement/pause/"' in listing
    form = client.get("/admin/payflow/jobrun/schedule/settlement/pause/")
    assert form.status_code == 200
    assert "ledger.settlement_run" in form.content.decode()

    no_reason = client.post("/admin/payflow/jobrun/schedule/settlement/pause/", {"reason": " "})
    assert no_reason.status_code == 400
    assert not JobRun.objects.filter(paused_at__isnull=False).exists()

    paused = client.post(
        "/admin/payflow/jobrun/schedule/settlement/pause/", {"reason": "bank holiday"}
    )
    assert paused.status_code == 302
    run = JobRun.objects.get(job="settlement")
    assert (run.paused_by, run.pause_reason) == ("olivia", "bank holiday")
    again = client.post("/admin/payflow/jobrun/schedule/settlement/pause/", {"reason": "again"})
    assert again.status_code == 400
    assert "already paused" in again.content.decode()
    shown = client.get("/admin/payflow/jobrun/").content.decode()
    assert "paused</strong> since" in shown
    assert "bank holiday" in shown
    assert client.get("/admin/payflow/jobrun/schedule/no-such-job/pause/").status_code == 404

    resumed = client.post(
        "/admin/payflow/jobrun/schedule/settlement/resume/", {"reason": "holiday over"}
    )
    assert resumed.status_code == 302
    assert JobRun.objects.get(job="settlement").paused_at is None
    assert recorded("payflow.jobrun", "settlement", "actor_label", "reason") == [
        ("operator.job_pause", "olivia", "bank holiday"),
        ("operator.job_resume", "olivia", "holiday over"),
    ]

    client.force_login(auditor)
    assert "/pause/" not in client.get("/admin/payflow/jobrun/").content.decode()
    refused = client.post("/admin/payflow/jobrun/schedule/settlement/pause/", {"reason": "x"})
    assert refused.status_code == 403
    assert JobRun.objects.get(job="settlement").paused_at is None


def test_operators_cannot_see_checkpoints_or_auditor_pages(client, operator):
    client.force_login(operator)
    assert client.get("/admin/audit/checkpoint/").status_code == 403
    assert client.get("/audit/").status_code == 403


def test_a_merchant_api_key_gives_no_admin_access(client, merchant):
    secret = api_key_create(merchant=merchant).secret
    response = client.get("/admin/ledger/transaction/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_non_staff_user_cannot_log_in_to_the_admin(client, django_user_model):
    django_user_model.objects.create_user("shop-owner", password="correct-horse-battery-9")
    response = client.post(
        "/admin/login/", {"username": "shop-owner", "password": "correct-horse-battery-9"}
    )
    assert response.status_code == 200
    assert "staff account" in response.content.decode()


def test_unknown_ids_in_admin_urls_are_not_found_not_errors(client, operator):
    client.force_login(operator)
    assert client.get("/admin/ledger/transaction/not-a-uuid/refund/").status_code == 404
    requeue = client.post("/admin/outbox/outboxevent/nope/requeue/", {"reason": "x"})
    assert requeue.status_code == 404
    assert client.get("/admin/ledger/transaction/not-a-uuid/change/").status_code == 302


@pytest.mark.parametrize(
    ("currency", "typed", "minor", "label"),
    [("EUR", "12.50", 1250, "12.50"), ("JPY", "1250", 1250, "1250"),
     ("KWD", "1.250", 1250, "1.250")],
)  # fmt: skip
def test_an_operator_types_amounts_in_the_currencys_major_units(
    client, operator, merchant, currency, typed, minor, label
):
    # Reproduced before: the refund form took minor units ("1250" for 12.50 EUR) and said so
    payment = pay(merchant, amount=5000, currency=currency)
    client.force_login(operator)
    url = f"/admin/ledger/transaction/{payment.pk}/refund/"
    form = client.get(url).content.decode()
    assert f"Amount ({currency})" in form
    assert f"In {currency}, e.g. {label}. Empty: all that remains." in form
    response = client.post(
        url, {"amount": typed, "reason": "customer returned it", "expected_version": "3"}
    )
    assert response.status_code == 302, response.content.decode()
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == minor
