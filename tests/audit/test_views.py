"""Auditor pages: who may see them, and what they show (the log, its checkpoints, one
object's history, evidence bundles, verification runs)."""

import base64
import json
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from audit import merkle, tlog
from audit.models import AuditEntry, Checkpoint, Cosignature, LogLeaf, VerificationRun
from ledger.services.refunds import refund_create
from payflow.platform import trail
from tests.audit.conftest import edit_entry, raw, sequence, test_sequencer, triggers_dropped
from tests.ledger.conftest import pay


def login(client, django_user_model, name, group=None):
    user = django_user_model.objects.create_user(name, password="pw-for-tests-1", is_staff=True)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    client.force_login(user)
    return user


@pytest.fixture
def auditor(client, django_user_model):
    return login(client, django_user_model, "alice", group="auditor")


PAGES = [
    "/audit/",
    "/audit/checkpoints",
    "/audit/checkpoints/1.txt",
    "/audit/export",
    "/audit/log.vkey",
    "/audit/records/ledger.transaction/x",
    "/audit/verifications/1",
    "/audit/retention/1.json",
]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_log_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize("path", PAGES)
def test_operators_and_other_staff_get_403(client, django_user_model, path):
    login(client, django_user_model, "ops", group="operator")
    assert client.get(path).status_code == 403


def test_an_api_key_gives_no_access_to_auditor_pages(client, merchant):
    from ledger.services.api_keys import api_key_create

    secret = api_key_create(merchant=merchant).secret
    response = client.get("/audit/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 302


def test_the_logs_endpoint_is_public_and_serves_no_entry_contents(client, merchant):
    payment = pay(merchant, amount=4321)
    sequence()
    note = client.get("/audit/log/checkpoint")
    assert note.status_code == 200  # no login: witnesses and auditors poll it
    assert note["Content-Type"].startswith("text/plain")
    proof = client.get("/audit/log/proof/inclusion", {"index": 0, "size": 1})
    assert proof.status_code == 200
    served = note.content.decode() + proof.content.decode()
    assert str(payment.pk) not in served
    assert "4321" not in served


def test_an_auditor_sees_the_log_its_checkpoints_and_a_record_history(client, auditor, merchant):
    payment = pay(merchant)
    sequence()
    checkpoint = Checkpoint.objects.get()
    dashboard = client.get("/audit/").content.decode()
    assert f"{checkpoint.size} entries in the log ({checkpoint.size} live" in dashboard
    assert f"Size {checkpoint.size}, signed" in dashboard
    assert checkpoint.root in dashboard
    assert "No verification has run yet." in dashboard
    listing = client.get("/audit/checkpoints").content.decode()
    assert f"checkpoint-{checkpoint.size}.txt" in listing
    assert settings.AUDIT_PUBLIC_KEY in listing
    downloaded = client.get(f"/audit/checkpoints/{checkpoint.size}.txt")
    assert downloaded["Content-Disposition"] == (
        f'attachment; filename="checkpoint-{checkpoint.size}.txt"'
    )
    key = client.get("/audit/log.vkey")
    assert key["Content-Disposition"] == 'attachment; filename="audit-log.vkey"'
    verifier = tlog.Verifier(key.content.decode())  # the download is the verifier key
    signed = tlog.verify_note(downloaded.content.decode(), verifier)
    assert (signed.size, signed.root.hex()) == (checkpoint.size, checkpoint.root)
    history = client.get(f"/audit/records/ledger.transaction/{payment.pk}").content.decode()
    assert history.count("contents ✓") == 3
    assert history.count("link ✓") == 3
    assert "payment.captured" in history
    assert "not sequenced yet" not in history
    leaves = LogLeaf.objects.filter(
        entry_id__in=AuditEntry.objects.filter(object_id=str(payment.pk)).values("id")
    )
    for index in leaves.values_list("index", flat=True):
        assert f"log index {index}</span>" in history


def test_the_dashboard_says_when_the_newest_entries_are_not_sealed_yet(client, auditor, merchant):
    pay(merchant)
    sequence()
    pay(merchant, amount=77)
    sequencer = test_sequencer(interval=3600.0)
    assert sequencer.claim()
    sequencer.load()
    sequencer.last_checkpoint_at = time.monotonic()  # it is not time to sign again
    assert sequencer.step().appended
    sequencer.release()
    size = Checkpoint.objects.get().size
    assert sequencer.size > size
    dashboard = client.get("/audit/").content.decode()
    assert f"Size {size}, signed" in dashboard
    assert "the newest are not sealed yet" in dashboard


def test_a_record_history_marks_entries_not_sequenced_yet(client, auditor, merchant):
    payment = pay(merchant)
    sequence()
    refund_create(payment=payment, amount=100)  # committed, not in the log yet
    history = client.get(f"/audit/records/ledger.transaction/{payment.pk}").content.decode()
    assert history.count("not sequenced yet") == 1
    assert history.count("contents ✓") == history.count("link ✓") == 4


@pytest.mark.parametrize("object_id", ["nothing-here", "4111111111111111"])
def test_a_record_history_of_an_unknown_object_says_so_without_echoing_it(
    client, auditor, db, object_id
):
    page = client.get(f"/audit/records/ledger.transaction/{object_id}")
    assert page.status_code == 404
    assert "No such object" in page.content.decode()
    assert object_id not in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_record_history_shows_an_edited_entry_and_a_broken_link(client, auditor, merchant):
    payment = pay(merchant, amount=9000)
    refund_create(payment=payment, amount=100)
    entries = list(AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id"))
    edited = entries[1].fields
    edited["new"]["amount"] = "1"
    edited.pop("v")
    with triggers_dropped():  # as a DBA: an entry's bytes edited, the next one's link cut
        raw(
            "UPDATE audit_auditentry SET body = %s WHERE id = %s",
            [trail.encode_body(edited), entries[1].id],
        )
        raw("UPDATE audit_auditentry SET prev_hash = %s WHERE id = %s", ["ab" * 32, entries[3].id])
    history = client.get(f"/audit/records/ledger.transaction/{payment.pk}").content.decode()
    assert history.count("contents ✗") == 2  # the edited one, and the one whose link was cut
    assert history.count("link ✗") == 1
    assert history.count("contents ✓") == len(entries) - 2


def test_checkpoints_list_their_witnesses(client, auditor, merchant, settings):
    pay(merchant)
    sequence()
    checkpoint = Checkpoint.objects.get()
    witness = tlog.generate_witness_key("witness.test/w1")
    settings.AUDIT_WITNESS_KEYS = [tlog.WitnessSigner(witness).verifier_key()]
    cosigned = tlog.add_cosignature(checkpoint.note, tlog.WitnessSigner(witness), 1_800_000_000)
    stored = client.post("/audit/log/cosignature", cosigned, content_type="text/plain")
    assert stored.status_code == 200
    assert Cosignature.objects.get().witness == "witness.test/w1"
    listing = client.get("/audit/checkpoints").content.decode()
    assert "witness.test/w1" in listing
    dashboard = client.get("/audit/").content.decode()
    assert "1 witness cosignature(s)" in dashboard
    downloaded = client.get(f"/audit/checkpoints/{checkpoint.size}.txt").content.decode()
    assert downloaded == cosigned  # the note and every stored cosignature line
    result = tlog.verify_cosignatures(
        downloaded, [tlog.WitnessVerifier(settings.AUDIT_WITNESS_KEYS[0])]
    )
    assert [name for name, _, _ in result.valid] == ["witness.test/w1"]


def test_a_checkpoint_that_does_not_exist_is_404(client, auditor, db):
    assert client.get("/audit/checkpoints/7.txt").status_code == 404
    assert client.get("/audit/verifications/7").status_code == 404
    assert client.get("/audit/retention/7.json").status_code == 404


def test_auditors_cannot_change_anything(client, auditor, db):
    assert client.post("/audit/checkpoints").status_code == 405
    assert client.post("/audit/").status_code == 405
    assert client.post("/audit/export").status_code == 405
    assert client.get("/audit/verifications").status_code == 405
    assert client.get("/audit/segments/1/check").status_code == 405


# --- evidence export ----------------------------------------------------------------------


def test_the_export_form_shows_without_a_selection(client, auditor, db):
    page = client.get("/audit/export")
    assert page.status_code == 200
    assert ">Download</button>" in page.content.decode()


def test_an_export_before_any_checkpoint_explains_itself(client, auditor, merchant):
    payment = pay(merchant)
    response = client.get(
        "/audit/export", {"object_type": "ledger.transaction", "object_id": str(payment.pk)}
    )
    assert response.status_code == 409
    assert "no signed checkpoint yet" in response.content.decode()


def test_an_export_of_one_object_proves_each_entry_against_the_signed_checkpoint(
    client, auditor, merchant
):
    payment = pay(merchant)
    sequence()
    response = client.get(
        "/audit/export", {"object_type": "ledger.transaction", "object_id": str(payment.pk)}
    )
    assert response.status_code == 200
    bundle = json.loads(b"".join(response.streaming_content))
    checkpoint = tlog.verify_note(bundle["checkpoint"], tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    assert response["Content-Disposition"] == (
        f'attachment; filename="evidence-{checkpoint.size}-3.json"'
    )
    assert (bundle["format"], bundle["tree_size"]) == ("payflow-audit-bundle/2", checkpoint.size)
    assert bundle["complete_objects"] == [["ledger.transaction", str(payment.pk)]]
    assert [e["entry"]["event_type"] for e in bundle["entries"]] == [
        "payment.created",
        "payment.authorized",
        "payment.captured",
    ]
    for entry in bundle["entries"]:
        body = base64.b64decode(entry["body"])
        assert trail.entry_hash(entry["prev_hash"], body) == entry["hash"]
        path = [base64.b64decode(node) for node in entry["inclusion"]]
        assert merkle.verify_inclusion(
            bytes.fromhex(entry["hash"]), entry["index"], checkpoint.size, path, checkpoint.root
        )


def test_an_export_with_a_trusted_checkpoint_adds_the_consistency_proof(client, auditor, merchant):
    payment = pay(merchant)
    sequence()
    trusted = Checkpoint.objects.get()
    refund_create(payment=payment, amount=100)
    sequence()
    latest = Checkpoint.objects.order_by("-size").first()
    # pasted into the form's textarea, which a browser sends with CRLF line breaks
    pasted = trusted.note.replace("\n", "\r\n")
    response = client.get("/audit/export", {"merchant": str(merchant.pk), "trusted": pasted})
    assert response.status_code == 200
    consistency = json.loads(b"".join(response.streaming_content))["consistency"]
    assert consistency["from_size"] == trusted.size
    assert merkle.verify_consistency(
        trusted.size,
        latest.size,
        bytes.fromhex(trusted.root),
        bytes.fromhex(latest.root),
        [base64.b64decode(node) for node in consistency["proof"]],
    )


def test_an_export_of_a_merchant_holds_its_own_entries_and_its_payments(client, auditor, merchant):
    from ledger.services.merchants import merchant_create

    other_merchant = merchant_create(name="Other Shop")
    payment = pay(merchant)
    pay(other_merchant)
    sequence()
    response = client.get("/audit/export", {"merchant": str(merchant.pk)})
    assert response.status_code == 200
    exported = {
        (e["entry"]["object_type"], e["entry"]["object_id"])
        for e in json.loads(b"".join(response.streaming_content))["entries"]
    }
    assert ("ledger.merchant", str(merchant.pk)) in exported
    assert ("ledger.transaction", str(payment.pk)) in exported
    assert ("ledger.cardtoken", str(payment.card_token_id)) in exported
    assert ("ledger.merchant", str(other_merchant.pk)) not in exported


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"since": "yesterday"}, "since must be an ISO 8601 time"),
        ({"since": "2026-01-01T00:00:00"}, "since must be an ISO 8601 time with its UTC offset"),
        ({"until": "2026-13-01T00:00:00+00:00"}, "until must be an ISO 8601 time"),
        ({"merchant": "x", "trusted": "not a note"}, "the trusted checkpoint does not verify"),
        ({"object_id": "no-such-object"}, "give both the object&#x27;s type and its id"),
        ({"object_type": "ledger.transaction", "since": "2026-01-01T00:00:00+00:00"}, "give both"),
        (
            {"object_type": "ledger.transaction", "object_id": "no-such-object"},
            "no entry of this selection is sealed",
        ),
    ],
)
def test_a_bad_export_request_explains_itself(client, auditor, merchant, query, problem):
    pay(merchant)
    sequence()
    response = client.get("/audit/export", query)
    # 400 for a request that cannot be read; 409 for one that selects nothing sealed
    assert response.status_code == (409 if "no entry" in problem else 400)
    assert problem in response.content.decode()


def test_a_trusted_checkpoint_signed_by_another_key_is_refused(client, auditor, merchant):
    pay(merchant)
    sequence()
    checkpoint = Checkpoint.objects.get()
    body = tlog.checkpoint_body(
        "payflow.test/audit", checkpoint.size, bytes.fromhex(checkpoint.root)
    )
    forged = tlog.sign_note(body, tlog.Signer(tlog.generate_signer_key("payflow.test/audit")))
    response = client.get("/audit/export", {"merchant": str(merchant.pk), "trusted": forged})
    assert response.status_code == 400
    assert "the trusted checkpoint does not verify" in response.content.decode()


# --- verification runs --------------------------------------------------------------------


@pytest.fixture
def eager():
    from payflow.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.mark.django_db(transaction=True)  # the run is queued on commit, as in production
def test_a_verification_an_auditor_starts_runs_in_their_name(
    client, django_user_model, merchant, monkeypatch, eager
):
    # The run was queued by task name from a process where that name was never registered:
    # Celery then sent it raw, past eager mode and past the audit context's headers.
    from audit import tasks
    from payflow.platform import context

    seen = []
    execute = tasks.verification_execute

    def spy(**kwargs):
        seen.append(context.current())
        return execute(**kwargs)

    monkeypatch.setattr(tasks, "verification_execute", spy)
    login(client, django_user_model, "alice", group="auditor")
    pay(merchant)
    sequence()
    response = client.post("/audit/verifications")
    assert response.status_code == 302
    run = VerificationRun.objects.get()
    assert response["Location"] == f"/audit/verifications/{run.id}"
    assert (run.status, run.ok, run.started_by, run.incremental) == ("done", True, "alice", False)
    assert run.checkpoint_size == Checkpoint.objects.get().size
    assert [(who.actor_label, who.reason) for who in seen] == [
        ("alice", "verification started by an auditor")
    ]
    page = client.get(response["Location"]).content.decode()
    assert 'id="result" class="ok">OK' in page
    assert "every ledger row reconciled" in page
    assert 'http-equiv="refresh"' not in page
    assert (
        f'<a href="/audit/verifications/{run.id}">#{run.id}</a>'
        in client.get("/audit/").content.decode()
    )


def test_a_queued_run_page_refreshes_and_shows_its_progress(client, auditor, db):
    run = VerificationRun.objects.create(started_by="alice", status="running", done=25, total=100)
    page = client.get(f"/audit/verifications/{run.id}").content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "25 of 100 log entries (25%)" in page
    assert '<progress max="100" value="25">' in page


@pytest.mark.django_db(transaction=True)
def test_a_broken_run_lists_every_break_with_a_link_to_the_objects_history(
    client, auditor, merchant, eager
):
    payment = pay(merchant)
    sequence()
    raw("UPDATE ledger_transaction SET amount = amount + 1 WHERE id = %s", [payment.pk.hex])
    response = client.post("/audit/verifications")
    run = VerificationRun.objects.get()
    assert (run.status, run.ok) == ("done", False)
    page = client.get(response["Location"]).content.decode()
    assert 'id="result" class="bad">BROKEN' in page
    kinds = {b["kind"] for b in run.breaks}
    assert "row_mismatch" in kinds
    assert page.count('<tr class="break">') == len(run.breaks)
    mismatch = next(b for b in run.breaks if b["kind"] == "row_mismatch")
    assert mismatch["public_id"].startswith("pay_")
    assert (
        f'<a href="/audit/records/ledger.transaction/{payment.pk}">{mismatch["public_id"]}</a>'
        in page
    )
    failed = VerificationRun.objects.create(started_by="x", status="failed", error="disk full")
    assert (
        "The run failed: disk full"
        in client.get(f"/audit/verifications/{failed.id}").content.decode()
    )


@pytest.mark.django_db(transaction=True)  # dropping triggers is DDL: it commits
def test_a_broken_run_names_the_first_bad_entry_and_the_last_good_checkpoint(
    client, auditor, merchant, eager
):
    pay(merchant)
    sequence()
    before = Checkpoint.objects.order_by("-size").first()
    second = pay(merchant)
    sequence()
    target = AuditEntry.objects.filter(object_id=str(second.pk)).order_by("id").first()
    edit_entry(target)
    page = client.get(client.post("/audit/verifications")["Location"]).content.decode()
    index = LogLeaf.objects.get(entry_id=target.id).index
    assert index >= before.size
    assert f"The first broken entry is at log index {index}." in page
    assert f"The last checkpoint before it, size {before.size} " in page
    assert f"root <code>{before.root}</code>" in page
    assert f'href="/audit/checkpoints/{before.size}.txt"' in page
    assert f'href="/audit/records/ledger.transaction/{second.pk}#entry-{index}"' in page
    history = client.get(f"/audit/records/ledger.transaction/{second.pk}").content.decode()
    assert f'id="entry-{index}"' in history  # the link's anchor
