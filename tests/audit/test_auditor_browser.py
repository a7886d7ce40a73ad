"""An auditor in headless Chromium: verify the log, read a history, download the log's key
and a checkpoint, export evidence (with a consistency proof from a checkpoint pasted into
the form), then see a tamper named by the next verification."""

import base64
import json

import pytest
from django.contrib.auth.models import Group

from audit import merkle, tlog
from audit.models import AuditEntry, Checkpoint, LogLeaf
from ledger.models import Transaction
from ledger.services.refunds import refund_create
from payflow.platform import trail
from tests.audit.conftest import raw, sequence, triggers_dropped
from tests.ledger.conftest import pay

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(
    params=["eager", pytest.param("worker", marks=pytest.mark.celery_worker)],
    ids=["in-process", "real-worker"],
)
def tasks_run(request):
    """Where the verification an auditor starts runs: in the web process (eager Celery), or
    in the real worker process on Redis, as in production."""
    from payflow.celery import app

    if request.param == "worker":
        request.getfixturevalue("celery_worker_process")
        yield request.param
        return
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield request.param
    app.conf.task_always_eager = before


@pytest.fixture
def auditor(django_user_model):
    user = django_user_model.objects.create_user(
        "alice", password="alice-pass-12345", is_staff=True
    )
    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    return user


def log_in(page, live_server):
    page.goto(f"{live_server.url}/audit/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pass-12345")
    page.click("input[type=submit]")
    page.wait_for_selector("h1:has-text('Audit log')")


def run_verification(page, live_server):
    page.goto(f"{live_server.url}/audit/")
    page.click("button:has-text('Run a verification')")
    page.wait_for_selector("#result", timeout=60_000)  # the page refreshes until done
    return page.inner_text("#result")


def download(page, action, path):
    with page.expect_download() as started:
        action()
    started.value.save_as(path)
    return path


def check_bundle(bundle, verifier_key):
    """The checks of ``docs/audit-formats.md`` §5 an offline verifier makes, with the
    downloaded verifier key only. Returns the verified checkpoint."""
    signed = tlog.verify_note(bundle["checkpoint"], tlog.Verifier(verifier_key))
    assert (bundle["format"], signed.size) == ("payflow-audit-bundle/2", bundle["tree_size"])
    previous = {}
    for entry in bundle["entries"]:
        body = base64.b64decode(entry["body"])
        assert trail.entry_hash(entry["prev_hash"], body) == entry["hash"]
        fields = json.loads(body)
        assert trail.encode_body({k: v for k, v in fields.items() if k != "v"}) == body
        key = (fields["object_type"], fields["object_id"])
        assert entry["prev_hash"] == previous.get(key, trail.GENESIS_HASH)
        previous[key] = entry["hash"]
        path = [base64.b64decode(node) for node in entry["inclusion"]]
        assert merkle.verify_inclusion(
            bytes.fromhex(entry["hash"]), entry["index"], signed.size, path, signed.root
        )
    if "consistency" in bundle:
        consistency = bundle["consistency"]
        assert merkle.verify_consistency(
            consistency["from_size"],
            signed.size,
            base64.b64decode(consistency["from_root"]),
            signed.root,
            [base64.b64decode(node) for node in consistency["proof"]],
        )
    return signed


def test_an_auditor_verifies_reads_a_history_exports_evidence_and_sees_a_tamper(
    live_server, page, auditor, merchant, tasks_run, tmp_path
):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=700)
    sequence()
    first = Checkpoint.objects.get()
    log_in(page, live_server)
    assert f"{first.size} entries in the log" in page.inner_text("main")

    # verification runs (in the web process or the real worker) and comes back OK
    assert run_verification(page, live_server).startswith("OK")

    # the history of the payment, every entry checked, each at its log index
    page.goto(f"{live_server.url}/audit/records/ledger.transaction/{payment.pk}")
    assert page.locator("text=contents ✓").count() == 4
    assert page.locator("text=link ✓").count() == 4
    assert page.locator("text=not sequenced yet").count() == 0

    # the log's verifier key and the first checkpoint, downloaded from the checkpoints page
    page.goto(f"{live_server.url}/audit/checkpoints")
    key = download(page, lambda: page.click("#public-key"), tmp_path / "audit-log.vkey")
    verifier_key = key.read_text().strip()
    trusted = download(
        page,
        lambda: page.click(f"text=checkpoint-{first.size}.txt"),
        tmp_path / "trusted.txt",
    ).read_text()
    assert tlog.verify_note(trusted, tlog.Verifier(verifier_key)).size == first.size

    # the log grows; the auditor exports the payment's history, pasting the trusted
    # checkpoint, and gets inclusion proofs and the consistency proof from it
    refund_create(payment=Transaction.objects.get(pk=payment.pk), amount=300)
    sequence()
    latest = Checkpoint.objects.order_by("-size").first()
    page.goto(f"{live_server.url}/audit/export")
    page.fill("input[name=object_type]", "ledger.transaction")
    page.fill("input[name=object_id]", str(payment.pk))
    page.fill("textarea[name=trusted]", trusted)  # the browser sends its lines with CRLF
    bundle_file = download(
        page, lambda: page.click("button:has-text('Download bundle')"), tmp_path / "bundle.json"
    )
    bundle = json.loads(bundle_file.read_text())
    assert check_bundle(bundle, verifier_key).size == latest.size
    assert bundle["consistency"]["from_size"] == first.size
    assert bundle["complete_objects"] == [["ledger.transaction", str(payment.pk)]]
    assert len(bundle["entries"]) == AuditEntry.objects.filter(object_id=str(payment.pk)).count()
    altered = json.loads(bundle_file.read_text())
    altered["entries"][0]["hash"] = "0" * 64
    with pytest.raises(AssertionError):
        check_bundle(altered, verifier_key)

    # a time range: every entry recorded in it
    page.goto(f"{live_server.url}/audit/export")
    page.fill("input[name=since]", AuditEntry.objects.order_by("id")[0].created_at.isoformat())
    in_range = json.loads(
        download(
            page, lambda: page.click("button:has-text('Download bundle')"), tmp_path / "range.json"
        ).read_text()
    )
    check_bundle(in_range, verifier_key)
    assert len(in_range["entries"]) == latest.size

    # a bad request is explained on the form, not a crash
    page.goto(f"{live_server.url}/audit/export")
    page.fill("input[name=merchant]", str(merchant.pk))
    page.fill("input[name=since]", "yesterday")
    page.click("button:has-text('Download bundle')")
    assert "since must be an ISO 8601 time" in page.inner_text("[role=alert]")

    # after a tamper (as a DBA would), the next verification names the entry
    target = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id")[1]
    fields = target.fields
    fields["reason"] = "edited"
    fields.pop("v")
    with triggers_dropped():
        raw(
            "UPDATE audit_auditentry SET body = %s WHERE id = %s",
            [trail.encode_body(fields), target.id],
        )
    assert run_verification(page, live_server).startswith("BROKEN")
    index = LogLeaf.objects.get(entry_id=target.id).index
    row = page.locator("tr.break").first.inner_text()
    assert row.startswith("hash_mismatch\t")
    assert f"\t{index}\t" in row
    page.locator("tr.break a").first.click()
    page.wait_for_selector("h1:has-text('History of')")
    assert page.locator("text=contents ✗").count() == 1
