"""Erasing a data subject without breaking the proof (issue 15, item 10).

A cardholder's name and e-mail go through the API as the card's holder name, a payment's
metadata and a refund's reason and metadata; the log is sealed and published to the
Kafka-protocol broker, the outbox relayed, a prefix archived to segment files and an
evidence bundle exported. Then an operator erases the cardholder in the admin. Afterwards
the whole log verifies, the bundle exported before still verifies (the offline tool and
the second verifier), and the name and e-mail are in no table, segment file, log record
or Kafka message, while another cardholder's data reads as before. On MariaDB.
"""

from __future__ import annotations

import datetime
import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.archive import audit_archive
from audit.evidence import evidence_export
from audit.models import AuditEntry, DataSubjectKey
from audit.subjects import STORE
from audit.verify import verify_log
from ledger import ids
from ledger.events import Topic
from ledger.exceptions import InvalidRequest
from ledger.models import CardToken, Transaction
from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from outbox.models import EventStatus, OutboxEvent
from payflow import operations
from payflow.platform import context, kafka, personal
from tests.audit import second_verifier
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay
from tests.pan_scan import every_stored_value
from tests.payflow.conftest import _staff
from tests.waiting import drain_outbox

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_evidence.py"
NAME = "Jeanne Dupont-Erasable"
EMAIL = "jeanne.dupont@example.org"
OTHER = "Paul Martin-Kept"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


@pytest.fixture
def operator(django_user_model):
    return _staff(django_user_model, "olivia-dpo", "operator")


@pytest.fixture
def archive_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    settings.AUDIT_SEGMENT_MAX_ROWS = 4
    settings.AUDIT_ARCHIVE_AFTER = datetime.timedelta(0)
    return tmp_path / "archive"


def api_for(merchant) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(merchant=merchant).secret}")
    return api


def paid_by(api: APIClient, holder: str, metadata: dict, key: str) -> tuple[dict, dict]:
    token = api.post("/v1/tokens", {"card": {**CARD, "name": holder}}, format="json")
    assert token.status_code == 201, token.content
    payment = api.post(
        "/v1/payments",
        {"amount": 5000, "currency": "EUR", "token": token.json()["id"], "metadata": metadata},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert payment.status_code == 201, payment.content
    return token.json(), payment.json()


def texts(value) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def found_in(text: str, needles: list[str]) -> list[str]:
    return [needle for needle in needles if needle in text]


def segment_texts(folder: Path) -> list[str]:
    return [
        gzip.decompress(path.read_bytes()).decode() for path in folder.rglob("*") if path.is_file()
    ]


def all_topics() -> list[str]:
    return [kafka.topic(topic) for topic in Topic]


def revealed_entries(object_type: str, object_id: str) -> list[dict]:
    return [
        entry.revealed
        for entry in AuditEntry.objects.filter(object_type=object_type, object_id=object_id)
    ]


def test_an_erased_cardholder_is_in_no_table_segment_log_or_kafka_message_and_proofs_hold(
    kafka_settings, archive_dir, caplog, client, operator, tmp_path, unredacted_logs
):
    caplog.set_level(logging.DEBUG)
    needles = [NAME, EMAIL]
    # given: a cardholder whose name and e-mail reached the trail in every way the API takes
    merchant = merchant_create(name="Boutique Erasure")
    api = api_for(merchant)
    token, payment = paid_by(api, NAME, {"customer": NAME, "email": EMAIL}, "order-erase-1")
    payment_id = str(ids.decode("payment", payment["id"]))
    token_id = ids.decode("token", token["id"])
    # the log sealed and published, the events relayed, a prefix archived to segment files
    sequence(publish=True)
    archived = audit_archive(now=timezone.now() + datetime.timedelta(seconds=1))
    assert archived.segments >= 1, archived
    refund = api.post(
        f"/v1/payments/{payment['id']}/refunds",
        {"amount": 1000, "reason": f"{NAME} returned one item", "metadata": {"contact": EMAIL}},
        format="json",
    )
    assert refund.status_code == 201, refund.content
    _, other_payment = paid_by(api, OTHER, {"customer": OTHER}, "order-keep-1")
    other_id = str(ids.decode("payment", other_payment["id"]))
    sequence(publish=True)
    drain_outbox()  # by this relay, or by a worker a nudge reached first
    assert OutboxEvent.objects.filter(status=EventStatus.PUBLISHED).exists()
    # a bundle of the payment's live entries (its refund's changes: sealed for the cardholder)
    bundle = evidence_export(object_type="ledger.transaction", object_id=payment_id)
    # before: an auditor reads the cardholder's data; the stored bytes hold it sealed only
    assert not [
        (table, column)
        for table, column, value in every_stored_value()
        if table in ("audit_auditentry", "outbox_outboxevent") and found_in(texts(value), needles)
    ]
    assert not found_in("\n".join(segment_texts(archive_dir)), needles)
    live = [entry for entry in AuditEntry.objects.filter(object_id=payment_id)]
    if live:
        assert any(
            entry.revealed["new"]
            and entry.revealed["new"].get("metadata", {}).get("email") == EMAIL
            for entry in live
        )

    # when: an operator erases the cardholder in the admin, with a reason
    client.force_login(operator)
    response = client.post(
        f"/admin/ledger/cardtoken/{token_id}/erase/", {"reason": "GDPR request #42"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sequence(publish=True)
    drain_outbox()

    # then: the whole log verifies (with reconciliation), and so does the old bundle
    report = verify_log()
    assert report.ok, [broken.as_dict() for broken in report.breaks]
    assert second_verifier.verify_bundle(bundle, settings.AUDIT_PUBLIC_KEY) == []
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    tool = subprocess.run(
        [sys.executable, str(TOOL), str(path), "--public-key", settings.AUDIT_PUBLIC_KEY],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tool.returncode == 0, (tool.stdout, tool.stderr)
    # the name and e-mail are in no table, no segment file, no log record, no Kafka message
    assert [
        (table, column)
        for table, column, value in every_stored_value()
        if found_in(texts(value), needles)
    ] == []
    assert found_in("\n".join(segment_texts(archive_dir)), needles) == []
    assert found_in(caplog.text, needles) == []
    messages = kafka_settings.consume(all_topics(), timeout=5)
    assert messages, "the sequencer and the relay published to the broker"
    published = "\n".join(
        texts(message.value() or b"") + texts(message.key() or b"") for message in messages
    )
    assert found_in(published, needles) == []
    # what was sealed for the cardholder reads as erased; the key is gone
    erased = [
        entry.revealed["new"]["metadata"]
        for entry in AuditEntry.objects.filter(object_id=payment_id, event_type="payment.created")
    ]
    assert erased in ([], [personal.ERASED])
    assert DataSubjectKey.objects.get(subject=f"cardholder:{token_id}").wrapped is None
    # the rows are anonymised, the card can no longer be charged
    assert Transaction.objects.get(pk=payment_id).metadata == {}
    assert api.get(f"/v1/payments/{payment['id']}").json()["metadata"] == {}
    again = api.post(
        "/v1/payments",
        {"amount": 100, "currency": "EUR", "token": token["id"]},
        format="json",
    )
    assert again.status_code == 404, again.content
    # the erasure is recorded, with the operator and the reason
    recorded = AuditEntry.objects.get(event_type="data_subject.erased")
    assert recorded.object_id == f"cardholder:{token_id}"
    assert recorded.revealed["reason"] == "GDPR request #42", recorded.fields["reason"]
    assert recorded.revealed["new"]["anonymised"]["transactions"] == "2"
    # and the other cardholder's data reads as it did
    kept = revealed_entries("ledger.transaction", other_id)
    assert any((entry["new"] or {}).get("metadata") == {"customer": OTHER} for entry in kept)
    assert Transaction.objects.get(pk=other_id).metadata == {"customer": OTHER}
    assert CardToken.objects.filter(fingerprint="").count() == 1


def test_a_new_value_for_an_erased_subject_is_written_erased_and_reconciles(merchant):
    subject = "cardholder:00000000-0000-0000-0000-000000000001"
    with context.bind(**context.system_actor("test:erasure")):
        from audit.subjects import subject_erase

        subject_erase(subject)
    sealed = personal.seal(
        {"customer": NAME}, subject=subject, object_type="t", object_id="1", field="metadata"
    )
    assert sealed == {"erased": True, "subject": subject}
    assert personal.reveal(sealed, object_type="t", object_id="1", field="metadata") == (
        personal.ERASED
    )


def test_a_sealed_value_moved_to_another_field_or_object_does_not_open(merchant):
    subject = "user:424242"
    with context.bind(**context.system_actor("test:erasure")):
        from django.db import transaction

        with transaction.atomic():
            sealed = personal.seal(
                "203.0.113.50", subject=subject, object_type="t", object_id="1", field="ip"
            )
    assert "203.0.113.50" not in json.dumps(sealed)
    assert personal.reveal(sealed, object_type="t", object_id="1", field="ip") == "203.0.113.50"
    assert personal.reveal(sealed, object_type="t", object_id="1", field="reason") == (
        personal.ERASED
    )
    assert personal.reveal(sealed, object_type="t", object_id="2", field="ip") == personal.ERASED


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--card", "tok_nothere", "--reason", "r", "--by", "dpo"], "card token id"),
        (["--card", "tok_" + "0" * 32, "--reason", "r", "--by", "dpo"], "no card token"),
        (["--user", "nobody-at-all", "--reason", "r", "--by", "dpo"], "no admin user"),
        (["--user", "x", "--reason", "r", "--by", "  "], "--by must name"),
    ],
)
def test_the_erase_command_refuses_bad_input_with_a_sentence(arguments, message):
    before = AuditEntry.objects.count()
    with pytest.raises(CommandError, match=message):
        call_command("audit_erase", *arguments)
    assert AuditEntry.objects.count() == before


def test_the_erase_command_erases_an_admin_user(django_user_model, capsys):
    leaver = django_user_model.objects.create_user("leaver", email="leaver@example.org")
    call_command("audit_erase", "--user", "leaver", "--reason", "left in 2019", "--by", "dpo")
    assert "erased user:" in capsys.readouterr().out
    leaver.refresh_from_db()
    assert (leaver.username, leaver.email, leaver.is_active) == (f"erased-{leaver.pk}", "", False)
    assert not leaver.has_usable_password()
    assert DataSubjectKey.objects.get(subject=f"user:{leaver.pk}").wrapped is None


def test_a_key_made_by_a_transaction_that_rolls_back_is_never_used(merchant):
    # Reproduced (review): a second seal in the same transaction read the uncommitted key
    # row and cached it; after the rollback the cache kept a key no row held, later values
    # were sealed with it and read as erased once the cache expired.
    subject = "user:777001"

    def sealed_ip(text):
        return personal.seal(text, subject=subject, object_type="t", object_id="1", field="ip")

    def seal_twice_then_roll_back():
        with transaction.atomic():
            sealed_ip("198.51.100.1")
            sealed_ip("198.51.100.2")
            raise RuntimeError("rolled back")

    with context.bind(**context.system_actor("test:erasure")):
        with pytest.raises(RuntimeError, match="rolled back"):
            seal_twice_then_roll_back()
        assert not DataSubjectKey.objects.filter(subject=subject).exists()
        with transaction.atomic():
            kept = sealed_ip("198.51.100.3")
    STORE.forget()  # as another process, or this one after the cache expired, sees it
    assert DataSubjectKey.objects.filter(subject=subject).exists()
    assert personal.reveal(kept, object_type="t", object_id="1", field="ip") == "198.51.100.3"


def test_an_operators_reason_naming_the_cardholder_is_erased_with_them(merchant, operator):
    # Reproduced (review): the entry's reason was sealed for the operator, so it stayed
    # readable after the cardholder's erasure.
    payment = pay(merchant, amount=5000)
    who = context.AuditContext(
        actor_type="user", actor_id=str(operator.pk), actor_label=operator.username
    )
    with context.replaced(who):
        operations.operator_refund_create(
            payment_id=payment.pk,
            amount=1000,
            expected_version=payment.version,
            reason=f"{NAME} returned the item",
        )
        operations.operator_cardholder_erase(token_id=payment.card_token_id, reason="art. 17")
    erasure = {
        "operator.cardholder_erase",
        "data_subject.erased",
        "card_token.erased",
        "transaction.personal_data_erased",
    }
    reasons = [
        entry.revealed["reason"]
        for entry in AuditEntry.objects.all()
        if entry.event_type not in erasure
    ]
    assert not any(NAME in str(reason) for reason in reasons), reasons
    assert personal.ERASED in reasons
    report = verify_log()
    assert report.ok, [broken.as_dict() for broken in report.breaks]


def test_a_refund_of_an_erased_cardholders_payment_takes_no_new_free_text(merchant, operator):
    # Reproduced (review): the refund row stored the new reason and metadata in plain.
    payment = pay(merchant, amount=5000)
    with context.bind(**context.system_actor("test:erasure")):
        operations.operator_cardholder_erase(token_id=payment.card_token_id, reason="art. 17")
        payment.refresh_from_db()
        with pytest.raises(InvalidRequest, match="cardholder was erased"):
            refund_create(payment=payment, amount=100, reason=f"{NAME} again")
        with pytest.raises(InvalidRequest, match="cardholder was erased"):
            refund_create(payment=payment, amount=100, metadata={"who": NAME})
        refund = refund_create(payment=payment, amount=100)  # the money still goes back
    assert (refund.reason, refund.metadata) == ("", {})
    assert not Transaction.objects.filter(reason__contains=NAME).exists()


@pytest.mark.parametrize("action", ["operator_refund_create", "operator_chargeback_create"])
def test_an_operator_can_return_an_erased_cardholders_money_with_a_readable_reason(
    merchant, operator, action
):
    # Reproduced (review): the operator's refund was refused ("takes no reason"), since
    # the action's required reason reached the refund row; a chargeback escaped the check
    # and stored its reason in plain on the row, which its entry read as erased.
    payment = pay(merchant, amount=5000)
    who = context.AuditContext(
        actor_type="user", actor_id=str(operator.pk), actor_label=operator.username
    )
    with context.replaced(who):
        operations.operator_cardholder_erase(token_id=payment.card_token_id, reason="art. 17")
        payment.refresh_from_db()
        getattr(operations, action)(
            payment_id=payment.pk,
            amount=1000,
            expected_version=payment.version,
            reason="card network case 4471",
        )
    child = Transaction.objects.get(parent=payment)
    assert (child.amount, child.reason, child.metadata) == (1000, "", {})
    # the reason is kept, readable, on the action's entries (the operator's data now)
    action_entry = AuditEntry.objects.get(event_type=f"operator.{action.removeprefix('operator_')}")
    assert action_entry.revealed["reason"] == "card network case 4471"
    inserted = AuditEntry.objects.get(object_id=str(child.pk), action="insert")
    assert inserted.revealed["reason"] == "card network case 4471"
    report = verify_log()
    assert report.ok, [broken.as_dict() for broken in report.breaks]


def test_erasing_an_admin_user_also_clears_the_name_a_paused_job_shows(django_user_model, operator):
    # Reproduced (review): payflow_jobrun.paused_by kept the erased user's name.
    leaver = _staff(django_user_model, "marie.leaver", "operator")
    who = context.AuditContext(actor_type="user", actor_id=str(leaver.pk), actor_label="marie")
    with context.replaced(who):
        operations.operator_job_set_paused(job="settlement", paused=True, reason="holiday")
    call_command("audit_erase", "--user", "marie.leaver", "--reason", "left", "--by", "dpo")
    assert [
        (table, column)
        for table, column, value in every_stored_value()
        if "marie.leaver" in texts(value)
    ] == []


def test_a_page_of_events_and_reconciliation_read_the_cardholders_keys_at_once(merchant):
    # Reproduced (review): every cardholder's key was a read of its own, on the events
    # page (a page of 100 events: up to 100 reads) and in reconciliation (per row).
    api = api_for(merchant)
    for n in range(6):
        paid_by(api, f"Holder {n}", {"order": f"o-{n}"}, f"key-{n}")
    sequence()

    def key_reads(run):
        STORE.forget()
        with CaptureQueriesContext(connection) as queries:
            result = run()
        return result, sum("audit_datasubjectkey" in q["sql"] for q in queries.captured_queries)

    page, reads = key_reads(lambda: api.get("/v1/events?limit=100"))
    assert page.status_code == 200
    opened = [e["data"]["object"].get("metadata") for e in page.json()["data"]]
    assert {"order": "o-3"} in opened
    assert reads == 1
    report, reads = key_reads(verify_log)
    assert report.ok, [broken.as_dict() for broken in report.breaks]
    assert reads <= 2  # a chunk of transactions, one of card tokens
