"""An operator in headless Chromium at 1366 px (issue #16's journey): finds a payment by its
pay_ id, refunds 12.50 EUR typed in euros, reads the refund's journal lines and its audit
diff, runs a job now (the real worker runs it), and exports a CSV of the day's payments.
Every list the operator reads fits the window; each page's screenshot is saved
(``var/test-artifacts``) and checked non-blank."""

import csv
import io
import time

import pytest

from ledger import ids
from ledger.models import JournalLine, Transaction
from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from payflow.models import JobRunRecord
from tests.infra.screenshots import checked_screenshot
from tests.ledger.conftest import pay
from tests.payflow.conftest import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
]
WIDTH = 1366


def shot(page, name):
    checked_screenshot(page, f"operator-{name}")


def fits(page, what):
    """The page's table is no wider than the window: no column cut off, no sideways scroll."""
    widths = page.evaluate(
        "() => [(document.querySelector('#result_list') || document.body)"
        ".getBoundingClientRect().right, document.documentElement.scrollWidth]"
    )
    assert widths[0] <= WIDTH, (what, widths)
    assert widths[1] <= WIDTH, (what, widths)


def test_an_operator_finds_refunds_reads_runs_a_job_and_exports(
    live_server, chromium, operator, celery_worker_process, tmp_path
):
    context = chromium.new_context(viewport={"width": WIDTH, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    shop = merchant_create(name="Boulangerie Martin")
    payment = pay(shop, amount=5000, external_reference="order-2026-0042")
    for amount in (1999, 250):
        pay(shop, amount=amount)
    api_key_create(merchant=shop, name="checkout server")
    public = ids.encode("payment", payment.pk)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard-link")

    # the transactions list fits 1366 px; the operator finds the payment by its pay_ id
    page.goto(f"{live_server.url}/admin/ledger/transaction/")
    shot(page, "transactions")
    fits(page, "transactions")
    page.fill("#searchbar", public)
    page.press("#searchbar", "Enter")
    page.click(f"#result_list a:has-text('{public}')")
    page.wait_for_selector(f"h2:has-text('{public}')")
    assert page.title().startswith(public)

    # refunds 12.50 EUR, typed in euros
    page.click("a.operator-action-link:has-text('Refund')")
    assert "Amount (EUR)" in page.inner_text("#content form")
    page.fill("#id_amount", "12.50")
    page.fill("#id_reason", "Customer returned one croissant tray")
    page.click("#confirm-action")
    assert "Refunded 12.50 EUR" in page.inner_text("ul.messagelist")
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == 1250

    # the payment's page: its journal lines, the refund's among them, and the audit diff
    lines = page.locator("#journal-lines tr.journal-line")
    assert lines.count() == (
        JournalLine.objects.filter(entry__transaction=payment).count()
        + JournalLine.objects.filter(entry__transaction__parent=payment).count()
    )
    refund_lines = page.locator("#journal-lines tr.journal-line", has_text="refund")
    assert refund_lines.count() >= 2
    assert "12.50 EUR" in refund_lines.first.inner_text()
    diff = page.locator("#audit-history tr.audit-row", has_text="payment.partially_refunded")
    assert "refunded_amount: 0.00 EUR → 12.50 EUR" in diff.inner_text()
    shot(page, "payment")

    # every other list fits too
    for path, name in (
        ("outbox/outboxevent", "outbox"),
        ("ledger/journalentry", "journal"),
        ("ledger/journalline", "journal-lines"),
        ("ledger/merchant", "merchants"),
        ("ledger/apikey", "api-keys"),
        ("ledger/cardtoken", "card-tokens"),
        ("ledger/account", "accounts"),
        ("audit/auditentry", "audit-entries"),
        ("payflow/jobrun", "jobs-list"),
    ):
        page.goto(f"{live_server.url}/admin/{path}/")
        shot(page, name)
        fits(page, name)

    # runs a job now; the real worker runs it and the page shows who asked
    page.goto(f"{live_server.url}/admin/payflow/jobrun/")
    page.click("#job-idempotency-purge a.run-now")
    page.fill("#id_reason", "stale keys after the incident")
    page.click("#confirm-action")
    assert "idempotency-purge is queued" in page.inner_text("ul.messagelist").lower()
    deadline = time.monotonic() + 60
    while not JobRunRecord.objects.filter(job="idempotency-purge").exists():
        assert time.monotonic() < deadline, "the worker did not run the job"
        time.sleep(0.2)
    page.reload()
    history = page.locator("#history-idempotency-purge")
    history.locator("summary").click()
    assert history.locator("td.started-by").first.inner_text() == "operator olivia"
    shot(page, "jobs")

    # exports a CSV of the day's payments
    page.goto(f"{live_server.url}/admin/ledger/transaction/?type__exact=payment")
    page.click("#changelist-filter a:has-text('Today')")
    page.wait_for_url("**initiated_at__gte=**")
    with page.expect_download() as started:
        page.click("#export-csv")
    path = tmp_path / "payments.csv"
    started.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {row["id"] for row in rows} == {
        ids.encode("payment", pk)
        for pk in Transaction.objects.filter(type="payment").values_list("pk", flat=True)
    }
    ours = next(row for row in rows if row["id"] == public)
    assert (ours["amount"], ours["refunded"], ours["external_reference"]) == (
        "50.00",
        "12.50",
        "order-2026-0042",
    )

    # and the dashboard pictures the day
    page.goto(f"{live_server.url}/admin/dashboard/")
    assert "3 payments in 24 h" in page.inner_text("#content-main")
    shot(page, "dashboard")
    context.close()
