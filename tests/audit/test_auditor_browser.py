"""An auditor in headless Chromium (issue #16's journey): logs in and lands on /audit/,
verifies the log, saves the log's key and a checkpoint, searches a payment's pay_ id, reads
its timeline with the refund's change in major units, downloads the payment's bundle (with
the consistency proof from the saved checkpoint, checked by ``tools/verify_evidence.py``)
and its CSV, then sees a DBA's tamper named by the next verification, with a link to the
payment. Each page's screenshot is saved (``var/test-artifacts``) and checked non-blank."""

import base64
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from audit import merkle, tlog
from audit.models import AuditEntry, Checkpoint, LogLeaf
from ledger import ids
from ledger.models import Transaction
from ledger.services.refunds import refund_create
from payflow.platform import trail
from tests.audit.conftest import edit_entry, sequence
from tests.infra.screenshots import checked_screenshot
from tests.ledger.conftest import pay

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "verify_evidence.py"


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
    """Logs in at the admin's login page, asking for no page: an auditor lands on /audit/."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pass-12345")
    page.click("input[type=submit]")
    page.wait_for_selector("h1:has-text('Audit log')")
    assert page.url == f"{live_server.url}/audit/"


def shot(page, name):
    checked_screenshot(page, f"auditor-{name}")


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


def test_an_auditor_finds_a_payment_reads_proves_exports_and_sees_a_tamper(
    live_server, page, auditor, merchant, tasks_run, tmp_path
):
    payment = pay(merchant, amount=5000)
    public = ids.encode("payment", payment.pk)
    sequence()
    first = Checkpoint.objects.get()

    # logs in and lands on /audit/; verification (in the web process or the real worker)
    log_in(page, live_server)
    assert f"{first.size} entries in the log" in page.inner_text("main")
    assert page.inner_text("#logged-in-as") == "alice"
    shot(page, "dashboard")
    assert run_verification(page, live_server).startswith("OK")

    # saves the log's verifier key and the first checkpoint from the checkpoints page
    page.goto(f"{live_server.url}/audit/checkpoints")
    key_file = download(page, lambda: page.click("#public-key"), tmp_path / "audit-log.vkey")
    verifier_key = key_file.read_text().strip()
    trusted_file = download(
        page, lambda: page.click(f"text=checkpoint-{first.size}.txt"), tmp_path / "trusted.txt"
    )
    trusted = trusted_file.read_text()
    assert tlog.verify_note(trusted, tlog.Verifier(verifier_key)).size == first.size
    shot(page, "checkpoints")

    # the merchant refunds 12.50 EUR; the auditor searches the pay_ id from the dashboard
    refund_create(payment=Transaction.objects.get(pk=payment.pk), amount=1250)
    sequence()
    latest = Checkpoint.objects.order_by("-size").first()
    page.goto(f"{live_server.url}/audit/")
    page.fill("form.search input[name=q]", public)
    page.click("form.search button")
    page.wait_for_selector(f"h1:has-text('History of {public}')")
    entries = AuditEntry.objects.filter(object_id=str(payment.pk)).count()
    assert page.locator("text=contents ✓").count() == entries
    assert page.locator("text=link ✓").count() == entries
    assert page.locator("text=in checkpoint ✓").count() == entries
    refund = page.locator("li.entry", has_text="payment.partially_refunded")
    row = refund.locator("table.diff tr", has_text="refunded_amount")
    assert row.inner_text().split("\t") == ["refunded_amount", "0.00 EUR", "12.50 EUR"]
    assert row.locator("span").nth(1).get_attribute("title") == "1250 minor units"
    shot(page, "history")

    # downloads the object's bundle (with the consistency proof from the saved checkpoint)
    page.click("text=Export this object's evidence")
    page.wait_for_selector("h1:has-text('Evidence export')")
    assert page.input_value("input[name=object]") == public  # filled in by the link
    page.set_input_files("#trusted-file", str(trusted_file))  # the saved checkpoint's file
    for _ in range(100):  # the page reads the file into the box (no eval: the CSP forbids it)
        if page.input_value("#trusted"):
            break
        page.wait_for_timeout(50)
    assert page.input_value("#trusted").replace("\r\n", "\n") == trusted
    bundle_file = download(
        page, lambda: page.click("button:has-text('Download')"), tmp_path / "bundle.json"
    )
    assert page.inner_text("#export-status") == f"{entries} entries downloaded."
    shot(page, "export")
    bundle = json.loads(bundle_file.read_text())
    assert check_bundle(bundle, verifier_key).size == latest.size
    assert bundle["consistency"]["from_size"] == first.size
    assert bundle["complete_objects"] == [["ledger.transaction", str(payment.pk)]]
    assert len(bundle["entries"]) == entries
    tool = subprocess.run(
        [sys.executable, "-I", str(TOOL), str(bundle_file), "--public-key", str(key_file),
         "--trusted-checkpoint", str(trusted_file)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert tool.returncode == 0, tool.stdout + tool.stderr
    altered = json.loads(bundle_file.read_text())
    altered["entries"][0]["hash"] = "0" * 64
    with pytest.raises(AssertionError):
        check_bundle(altered, verifier_key)

    # and the same entries as CSV
    page.check("input[name=format][value=csv]")
    csv_file = download(
        page, lambda: page.click("button:has-text('Download')"), tmp_path / "entries.csv"
    )
    rows = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    assert [row["hash"] for row in rows] == [entry["hash"] for entry in bundle["entries"]]
    assert any("refunded_amount: 0.00 EUR → 12.50 EUR" in row["changes"] for row in rows)

    # a bad request is explained on the form, not a crash
    page.goto(f"{live_server.url}/audit/export")
    page.fill("input[name=merchant]", str(merchant.pk))
    page.fill("input[name=since]", "yesterday")
    page.click("button:has-text('Download')")
    page.wait_for_selector("[role=alert]")
    assert "since must be an ISO 8601 time" in page.inner_text("[role=alert]")

    # after a tamper (as a DBA would), the next verification names the payment
    target = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("id")[1]
    edit_entry(target)
    assert run_verification(page, live_server).startswith("BROKEN")
    shot(page, "broken")
    index = LogLeaf.objects.get(entry_id=target.id).index
    row = page.locator("tr.break").first
    assert row.inner_text().startswith(f"hash_mismatch\t{public}")
    assert f"\t{index}\t" in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_selector(f"h1:has-text('History of {public}')")
    assert page.locator("text=contents ✗").count() == 1
    shot(page, "tampered-history")
