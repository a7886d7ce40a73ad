"""An auditor in headless Chromium: verify, see a tamper, read a history, export evidence."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from audit.checkpoints import audit_checkpoint_create
from audit.models import AuditEntry
from ledger.services.refunds import refund_create
from tests.audit.conftest import raw, triggers_dropped
from tests.ledger.conftest import pay

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
]
VERIFIER = Path(settings.BASE_DIR) / "tools" / "verify_evidence.py"


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
    page.wait_for_selector("h1:has-text('Audit trail')")


def run_verification(page):
    page.click("button:has-text('Run a verification')")
    page.wait_for_selector("#result", timeout=60_000)  # the page refreshes until done
    return page.inner_text("#result")


def test_an_auditor_verifies_sees_a_tamper_reads_a_history_and_exports_evidence(
    live_server, page, auditor, merchant, celery_worker_process, tmp_path
):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=700)
    audit_checkpoint_create()
    log_in(page, live_server)

    # verification runs in the real worker and comes back OK
    assert run_verification(page).startswith("OK")

    # the history of the payment, every row verified
    page.goto(f"{live_server.url}/audit/records/ledger.transaction/{payment.pk}")
    assert page.locator("text=contents ✓").count() == 4
    assert page.locator("text=link ✓").count() == 4

    # an evidence bundle for the payment's lane, accepted offline with the public key
    lane = AuditEntry.objects.filter(object_id=str(payment.pk)).first().lane
    with page.expect_download() as key_download:
        page.goto(f"{live_server.url}/audit/checkpoints")
        page.click("#public-key")
    key = tmp_path / "key.pem"
    key_download.value.save_as(key)
    page.goto(f"{live_server.url}/audit/export")
    page.select_option("select[name=lane]", str(lane))
    with page.expect_download() as bundle_download:
        page.click("button:has-text('Download bundle')")
    bundle = tmp_path / "bundle.json"
    bundle_download.value.save_as(bundle)
    accepted = subprocess.run(
        [sys.executable, str(VERIFIER), str(bundle), "--public-key", str(key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accepted.returncode == 0, accepted.stderr
    altered = json.loads(bundle.read_text())
    altered["entries"][0]["hash"] = "0" * 64
    bundle.write_text(json.dumps(altered))
    rejected = subprocess.run(
        [sys.executable, str(VERIFIER), str(bundle), "--public-key", str(key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rejected.returncode == 1

    # after a tamper (as a DBA would), the next verification shows the break
    target = AuditEntry.objects.filter(object_id=str(payment.pk)).order_by("seq")[1]
    with triggers_dropped():
        raw("UPDATE audit_auditentry SET reason = 'edited' WHERE id = %s", [target.id])
    page.goto(f"{live_server.url}/audit/")
    assert run_verification(page).startswith("BROKEN")
    row = page.locator("tr.break").first.inner_text()
    assert f"{target.lane}\t{target.seq}\trow_altered" in row
