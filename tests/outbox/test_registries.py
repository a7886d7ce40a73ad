"""The registries are the vocabulary: ``ledger.events.EventType`` and ``audit.actions``.

The real services produce every event type and every audit action listed (operator actions,
the retention purge and failed logins included); each one validates against its published
schema (an outbox envelope, or the sequencer's ``audit.events`` message); nothing is emitted
or recorded that the registries do not list; and the schemas and docs/events.md say what
the registries say.
"""

from __future__ import annotations

import base64
import datetime
import inspect
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from jsonschema import Draft202012Validator

from audit import tlog
from audit.actions import AUDIT_EVENTS, OPERATOR_ACTIONS, Action, UnknownAction
from audit.archive import audit_archive
from audit.models import AuditEntry, Checkpoint
from audit.retention import audit_retention_purge, legal_hold_place, legal_hold_release
from audit.sequencer import log_size, published_messages
from audit.services import audit_record
from ledger.events import EventType, Topic
from ledger.models import Transaction
from ledger.services.api_keys import api_key_create, api_key_revoke
from ledger.services.merchants import (
    merchant_create,
    merchant_reactivate,
    merchant_set_legal_hold,
    merchant_suspend,
)
from ledger.services.refunds import refund_create
from ledger.services.vault import vault_keys_register, vault_reencrypt_batch
from ledger.signals import ledger_changed
from outbox import events, receivers
from outbox.models import EventStatus, OutboxEvent
from payflow import login_guard, operations
from payflow.models import WebhookDelivery, WebhookEndpoint
from payflow.platform import db, trail
from payflow.webhooks import dispatch
from payflow.webhooks.endpoints import (
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_roll_secret,
)
from tests.audit.chainseed import seed_chain
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay
from tests.outbox import contract_files
from tests.outbox.test_contract import emit_every_kind_of_event

SCHEMAS = Path(events.__file__).parent / "schemas"
ROOT = Path(__file__).resolve().parents[2]
SEEDED = "audit.seed"  # tests.audit.chainseed's entries: written by no service

#: Listed, but nothing running today records them: the lane-era ledger 0002 merged
#: duplicate platform accounts as ``account.merged`` rows with action ``delete`` (it
#: refuses now), and audit 0008 closes a migrated lane trail with ``audit.lanes_migrated``
#: (action ``migrate``). A log migrated from the lanes holds such entries, so they stay
#: listed and ``audit.events`` consumers must accept them.
NOT_DRIVEN = {EventType.ACCOUNT_MERGED: "ledger/migrations/0002_account_owner.py"}
NOT_DRIVEN_AUDIT = {"audit.lanes_migrated": "audit/migrations/0008_transparency_log.py"}
NOT_DRIVEN_ACTIONS = {Action.DELETE, Action.MIGRATE}
DECLINED = "4000000000000002"
REFUND_REFUSED = "4000000000005126"
NEW_VAULT_KEY = bytes(range(100, 132))


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(schema: str, document: dict) -> list[str]:
    return sorted(error.message for error in _validator(schema).iter_errors(document))


@pytest.fixture
def emitted():
    """Every ledger change signalled while the test runs (the audit entries are read from
    their rows afterwards: ``AuditEntry`` is the only record of them)."""
    seen: dict[str, list] = {"changes": []}

    def on_change(sender, instance, action, event_type, new_values, old_values=None, **kwargs):
        seen["changes"].append((sender, action, str(event_type), new_values, old_values))

    ledger_changed.connect(on_change, dispatch_uid="test-registries-changes")
    yield seen
    ledger_changed.disconnect(dispatch_uid="test-registries-changes")


def purge_old_archived_rows(settings, tmp_path):
    """Entries past retention, first in the log, archived, then purged
    (``audit.retention_purged``)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    settings.AUDIT_SEGMENT_MAX_ROWS = 10
    now = timezone.now()
    year = datetime.timedelta(days=365)
    seed_chain(20, start=now - 9 * year, end=now - 8 * year, objects=4, object_type=SEEDED)
    seed_chain(5, start=now - datetime.timedelta(days=2), end=now, objects=4, object_type=SEEDED)
    sequence()
    assert audit_archive(now=now).segments == 2
    assert audit_retention_purge(now=now).segments == 2


def drive_the_ledger(merchant, settings):
    emit_every_kind_of_event(merchant)
    refused = pay(merchant, amount=3_000, number=REFUND_REFUSED)
    refund_create(payment=refused)  # refund.failed, payment.refund_failed, command failed
    issued = api_key_create(merchant=merchant, name="registry", mode="test")
    api_key_revoke(api_key=issued.api_key)
    merchant_suspend(merchant=merchant)
    merchant_reactivate(merchant=merchant)
    merchant_set_legal_hold(merchant=merchant, legal_hold=True)
    merchant_set_legal_hold(merchant=merchant, legal_hold=False)
    # a new vault key: registered, and the tokens so far re-encrypted under it
    settings.VAULT_KEYS = {**settings.VAULT_KEYS, max(settings.VAULT_KEYS) + 1: NEW_VAULT_KEY}
    assert vault_keys_register()
    assert vault_reencrypt_batch().reencrypted >= 1


def operator_drivers(merchant) -> dict:
    """One call of each ``operator_*`` function of ``payflow.operations``."""

    def payment_at(**kwargs):
        payment = pay(merchant, **kwargs)
        return {"payment_id": payment.pk, "expected_version": payment.version}

    def refund_then_chargeback():
        payment = pay(merchant, amount=5_000)
        operations.operator_refund_create(
            payment_id=payment.pk, amount=1_000, expected_version=payment.version, reason="r"
        )
        payment.refresh_from_db()
        operations.operator_chargeback_create(
            payment_id=payment.pk, amount=500, expected_version=payment.version, reason="r"
        )

    def requeue():
        event = OutboxEvent.objects.filter(aggregate_type="payment").order_by("id").first()
        OutboxEvent.objects.filter(pk=event.pk).update(status=EventStatus.DEAD, attempts=10)
        operations.operator_outbox_requeue(event_id=event.pk, reason="schema fixed")

    def issue_then_revoke():
        issued = operations.operator_api_key_issue(
            merchant_id=merchant.pk, name="ops", mode="test", reason="r"
        )
        operations.operator_api_key_revoke(api_key_id=issued.api_key.pk, reason="r")

    def suspend_then_reactivate():
        for active in (False, True):
            operations.operator_merchant_set_active(
                merchant_id=merchant.pk, active=active, reason="r"
            )

    def erase_a_cardholder():
        payment = pay(merchant, amount=2_000, metadata={"customer": "Registry Person"})
        refund_create(payment=payment, amount=500, reason="asked by the customer")
        operations.operator_cardholder_erase(token_id=payment.card_token_id, reason="art. 17")

    def erase_a_user():
        leaver = get_user_model().objects.create_user("registry-leaver")
        operations.operator_user_erase(user_id=leaver.pk, reason="left the company")

    def resend_a_webhook():
        made = webhook_endpoint_create(
            merchant=merchant, livemode=False, url="http://127.0.0.1:9/h", enabled_events=["*"]
        )
        pay(merchant, amount=1_000)
        dispatch.owe(list(OutboxEvent.objects.values_list("id", flat=True)))
        delivery = WebhookDelivery.objects.filter(endpoint=made.endpoint).first()
        operations.operator_webhook_resend(delivery_id=delivery.pk, reason="receiver fixed")

    def enable_a_webhook_endpoint():
        made = webhook_endpoint_create(
            merchant=merchant, livemode=False, url="http://127.0.0.1:9/h", enabled_events=["*"]
        )
        webhook_endpoint_disable(endpoint_id=made.endpoint.pk, reason="failed for 3 days")
        operations.operator_webhook_endpoint_enable(endpoint_id=made.endpoint.pk, reason="fixed")
        webhook_endpoint_roll_secret(endpoint=WebhookEndpoint.objects.get(pk=made.endpoint.pk))

    def pause_then_resume():
        for paused in (True, False):
            operations.operator_job_set_paused(job="settlement", paused=paused, reason="r")

    return {
        "operator_payment_capture": lambda: operations.operator_payment_capture(
            **payment_at(capture=False), amount=None, reason="r"
        ),
        "operator_payment_cancel": lambda: operations.operator_payment_cancel(
            **payment_at(capture=False), reason="r"
        ),
        "operator_refund_create": refund_then_chargeback,
        "operator_chargeback_create": refund_then_chargeback,
        "operator_outbox_requeue": requeue,
        "operator_api_key_issue": issue_then_revoke,
        "operator_api_key_revoke": issue_then_revoke,
        "operator_merchant_create": lambda: operations.operator_merchant_create(
            name="Ops Shop", default_currency="EUR", settlement_delay_days=2, reason="r"
        ),
        "operator_merchant_set_active": suspend_then_reactivate,
        "operator_job_set_paused": pause_then_resume,
        # the request is the action (audited); the run is queued after, outside this test
        "operator_job_run_now": lambda: operations.operator_job_run_now(
            job="settlement", reason="r"
        ),
        "operator_cardholder_erase": erase_a_cardholder,
        "operator_user_erase": erase_a_user,
        "operator_webhook_resend": resend_a_webhook,
        "operator_webhook_endpoint_enable": enable_a_webhook_endpoint,
    }


def drive_the_operators(merchant):
    drivers = operator_drivers(merchant)
    defined = {
        name
        for name, function in inspect.getmembers(operations, inspect.isfunction)
        if name.startswith("operator_") and "reason" in inspect.signature(function).parameters
    }
    # a new operator action must be driven here, so that its row is checked below
    assert set(drivers) == defined
    for driver in dict.fromkeys(drivers.values()):
        driver()


def drive_the_audit_itself(merchant):
    hold = legal_hold_place(
        object_type="ledger.merchant", object_id=str(merchant.pk), reason="court", placed_by="l"
    )
    legal_hold_release(hold_id=hold.pk, released_by="l")
    login_guard.record_failure("nobody-we-know", None)


@pytest.mark.django_db(transaction=True)
def test_every_registered_event_type_and_action_is_emitted_and_matches_its_schema(
    emitted, settings, tmp_path
):
    # given a clean slate, when every service that writes a listed event or entry runs (the
    # purge first: it archives the log's oldest entries, which must come before any real one)
    first_event = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    first_entry = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    purge_old_archived_rows(settings, tmp_path)
    merchant = merchant_create(name="Registry Shop", default_currency="EUR")
    drive_the_audit_itself(merchant)
    drive_the_ledger(merchant, settings)
    drive_the_operators(merchant)
    sequence()  # every entry into the log, as the sequencer publishes it to audit.events
    outbox = OutboxEvent.objects.order_by("id")
    if first_event is not None:
        outbox = outbox.filter(id__gt=first_event)
    entries = list(
        AuditEntry.objects.filter(id__gt=first_entry).exclude(object_type=SEEDED).order_by("id")
    )
    messages = [json.loads(value) for _, value in published_messages(0, log_size())]

    # then every ledger change names a listed event type, and a transaction's on its topic
    for sender, action, event_type, new_values, old_values in emitted["changes"]:
        listed = EventType(event_type)
        if sender is Transaction and event_type in receivers.UNPUBLISHED:
            # recorded in the audit trail only, whatever kind of transaction it is about
            assert (listed.aggregate, listed.topic) == ("transaction", None), event_type
            assert not outbox.filter(event_type=event_type).exists(), event_type
        elif sender is Transaction:
            assert listed.aggregate == new_values["type"], event_type
            assert listed.topic == events.topic_for(action, new_values, old_values), event_type
            assert listed.schema == "transaction.json", event_type
        else:
            assert listed.topic is None, event_type
    # every audit entry has a listed action and event type
    for entry in entries:
        assert entry.action in Action.values, entry.event_type
        own = AUDIT_EVENTS.get(entry.event_type)
        if own is not None:
            assert entry.action == own.action, entry.event_type
        else:
            EventType(entry.event_type)  # ValueError if it is not listed
    # every live entry reaches audit.events, and each message validates as published
    assert EventType.AUDIT_ENTRY_RECORDED.schema == "audit_entry.json"
    assert {message["hash"] for message in messages} == set(
        AuditEntry.objects.values_list("hash", flat=True)
    )
    by_hash = {entry.hash: entry for entry in entries}
    for message in messages:
        assert schema_errors("audit_entry.json", message) == [], message["entry"]["event_type"]
        body = base64.b64decode(message["body"])
        assert json.loads(body) == message["entry"]
        assert trail.entry_hash(message["prev_hash"], body) == message["hash"]
        if message["hash"] in by_hash:
            assert message["entry"] == by_hash[message["hash"]].fields
    # every outbox event: the envelope, and the payload against its event type's schema
    for event in outbox:
        listed = EventType(event.event_type)
        envelope = json.loads(json.dumps(events.envelope(event)))
        assert schema_errors("envelope.json", envelope) == [], event.event_type
        assert schema_errors(listed.schema, envelope["payload"]) == [], event.event_type
        assert event.topic == events.full_topic(listed.topic), event.event_type
        assert event.aggregate_type == listed.aggregate, event.event_type

    # and each registry is covered: every listed name was produced by a real service (the
    # two audit.* event types by the sequencer, above)
    produced = {str(event_type) for _, _, event_type, _, _ in emitted["changes"]}
    produced |= set(outbox.values_list("event_type", flat=True))
    produced |= {EventType.AUDIT_ENTRY_RECORDED} if messages else set()
    latest = Checkpoint.objects.order_by("-size").first()
    signed = tlog.verify_note(latest.note, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    if signed.size == log_size():
        produced.add(EventType.AUDIT_CHECKPOINT_SIGNED)
    assert sorted(set(EventType) - set(NOT_DRIVEN) - produced) == []
    recorded = {entry.event_type for entry in entries}
    assert sorted(set(AUDIT_EVENTS) - set(NOT_DRIVEN_AUDIT) - recorded) == []
    assert {entry.action for entry in entries} >= set(Action) - NOT_DRIVEN_ACTIONS
    assert (
        sum(entry.event_type.startswith("operator.") for entry in entries) == 17
    )  # one per action asked


def test_what_nothing_records_any_more_is_still_listed_and_accepted_on_audit_events():
    # where it came from: the lane-era merge (ledger 0002 now refuses and names the release
    # that merged), and audit 0008's closing entry
    merge = (ROOT / NOT_DRIVEN[EventType.ACCOUNT_MERGED]).read_text()
    assert "0233949" in merge
    assert "account.merged" in merge
    assert EventType.ACCOUNT_MERGED.topic is None
    for event_type, migration in NOT_DRIVEN_AUDIT.items():
        source = (ROOT / migration).read_text()
        assert f'"{event_type}"' in source
        assert f'"{AUDIT_EVENTS[event_type].action.value}"' in source
    # a migrated log holds such entries: audit.events consumers must accept them
    for event_type, action, old, new in [
        (
            "account.merged",
            Action.DELETE,
            {"id": "7", "kind": "acquirer_clearing", "currency": "CHF"},
            {"merged_into": "3", "moved_lines": ["41"]},
        ),
        ("audit.lanes_migrated", Action.MIGRATE, None, {"entries": "12", "lanes": []}),
    ]:
        fields = {
            "action": action.value,
            "actor": {"id": "migration", "label": "migration", "type": "system"},
            "created_at": timezone.now(),
            "event_type": event_type,
            "ip": "",
            "new": new,
            "object_id": "7",
            "object_type": "ledger.account",
            "old": old,
            "reason": "",
            "request_id": "",
            "task_id": "",
            "user_agent": "",
        }
        body = trail.encode_body(fields)
        message = {
            "body": base64.b64encode(body).decode(),
            "entry": json.loads(body),
            "hash": trail.entry_hash(trail.GENESIS_HASH, body),
            "index": 0,
            "prev_hash": trail.GENESIS_HASH,
        }
        assert schema_errors("audit_entry.json", message) == [], event_type


def test_every_published_event_type_has_a_schema_and_every_transaction_type_its_created():
    for event_type in EventType:
        envelope = {
            "event_id": "01a1ffa0-b350-754f-95df-7bca0353cfd6",
            "type": str(event_type),
            "schema_version": events.SCHEMA_VERSION,
            "aggregate": {"type": event_type.aggregate, "id": "x"},
            "sequence": 1,
            "occurred_at": "2026-11-21T19:41:24.180214+00:00",
            "payload": {},
        }
        if event_type.aggregate == "audit_log":
            # the sequencer's, not the outbox's: no envelope; audit.events messages follow
            # audit_entry.json, an audit.checkpoints message is the signed note's text
            assert event_type.topic in (Topic.AUDIT_EVENTS, Topic.AUDIT_CHECKPOINTS)
            assert not _validator("envelope.json").is_valid(envelope), event_type
            if event_type.topic == Topic.AUDIT_EVENTS:
                assert event_type.schema == "audit_entry.json"
                assert (SCHEMAS / event_type.schema).is_file(), event_type
            else:
                assert event_type.schema is None, event_type
        elif event_type.topic is not None:
            assert (SCHEMAS / event_type.schema).is_file(), event_type
            assert _validator("envelope.json").is_valid(envelope), event_type
        else:
            assert event_type.schema is None, event_type
    transaction_types = json.loads((SCHEMAS / "transaction.json").read_text())
    for transaction_type in transaction_types["properties"]["type"]["enum"]:
        assert EventType.created(transaction_type).topic == Topic.TRANSACTIONS_INITIATED
    assert {str(topic) for topic in events.ALL_TOPICS} == {event.topic for event in EventType} - {
        None
    }


def test_every_operator_action_is_listed():
    source = inspect.getsource(operations)
    for name in OPERATOR_ACTIONS:
        assert f'"{name}"' in source, name


@pytest.mark.parametrize("action", ["operator-action", "INSERT"])
@pytest.mark.django_db(transaction=True)
def test_an_unknown_audit_action_is_refused_and_nothing_is_written(action):
    before = (AuditEntry.objects.count(), OutboxEvent.objects.count())

    @db.atomic
    def record():
        audit_record(
            object_type="ledger.merchant",
            object_id="m",
            action=action,
            event_type=EventType.MERCHANT_CREATED,
            old_values=None,
            new_values={},
        )

    with pytest.raises(UnknownAction, match="unknown audit action"):
        record()
    assert (AuditEntry.objects.count(), OutboxEvent.objects.count()) == before


def test_an_unlisted_event_type_is_refused_by_name():
    with pytest.raises(ValueError, match="is not a valid EventType"):
        EventType.created("loan")


def test_the_schemas_and_docs_say_what_the_registries_say():
    stale = [
        str(path.relative_to(contract_files.ROOT))
        for path, text in contract_files.rendered().items()
        if path.read_text() != text
    ]
    assert stale == [], "run: python -m tests.outbox.contract_files"
