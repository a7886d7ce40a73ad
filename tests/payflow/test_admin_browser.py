"""Operators, auditors and a superuser in headless Chromium against the live server."""

import re

import pytest

from audit.models import AuditEntry
from ledger import ids
from ledger.models import Transaction
from ledger.services.merchants import merchant_create
from tests.ledger.conftest import pay
from tests.payflow.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username, lands_on="#site-name:has-text('PayFlow operations')"):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector(lands_on)


def test_an_operator_finds_a_payment_and_refunds_part_of_it_with_a_reason(
    live_server, page, operator
):
    # given a captured payment of 50.00 EUR
    payment = pay(merchant_create(name="Boulangerie Martin"), amount=5000)
    public = ids.encode("payment", payment.pk)
    log_in(page, live_server, "olivia")

    # the operator finds it by its public id
    page.goto(f"{live_server.url}/admin/ledger/transaction/")
    page.fill("#searchbar", public)
    page.press("#searchbar", "Enter")
    page.click(f"a:has-text('{public}')")
    page.wait_for_selector("span.money[title='5000 minor units']:has-text('50.00 EUR')")

    # refunds 12.50 EUR of it, typed in euros, with a reason, after a first try with a bad amount
    page.click("a.operator-action-link:has-text('Refund')")
    page.fill("#id_amount", "12.505")
    page.fill("#id_reason", "Customer returned one croissant tray")
    page.click("#confirm-action")
    assert "at most 2 decimals" in page.inner_text(".errorlist")
    page.fill("#id_amount", "12.50")
    page.click("#confirm-action")
    assert "Refunded 12.50 EUR" in page.inner_text("ul.messagelist")

    # the payment's audit history names the operator and the reason
    history = page.locator("#audit-history tr.audit-row", has_text="payment.partially_refunded")
    assert history.count() == 1
    assert history.locator("td.actor").inner_text() == "olivia (user)"
    assert history.locator("td.reason").inner_text() == "Customer returned one croissant tray"
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == 1250


def test_an_auditor_can_read_a_transaction_but_not_change_it(live_server, page, auditor):
    payment = pay(merchant_create(name="Audited Shop"), amount=5000)
    log_in(page, live_server, "alice", lands_on="h1:has-text('Audit log')")  # /audit/
    page.click("text=Admin")
    page.wait_for_selector("#audit-link")  # the admin links back to /audit/

    page.goto(f"{live_server.url}/admin/ledger/transaction/{payment.pk}/change/")
    page.wait_for_selector("#audit-history")
    assert page.locator("a.operator-action-link").count() == 0
    assert page.locator("input[type=submit]").count() == 0
    # no refund tool of any kind: neither the operator's action link nor a list action
    assert page.locator("a:has-text('Refund')").count() == 0
    page.goto(f"{live_server.url}/admin/ledger/transaction/")
    assert page.locator("select[name=action] option:has-text('Refund')").count() == 0

    response = page.goto(f"{live_server.url}/admin/ledger/transaction/{payment.pk}/refund/")
    assert response.status == 403
    assert Transaction.objects.get(pk=payment.pk).refunded_amount == 0


def test_nobody_can_edit_or_delete_an_audit_row_not_even_a_superuser(live_server, page, superuser):
    merchant = merchant_create(name="Audited Shop")
    entry = AuditEntry.objects.get(object_id=str(merchant.pk))
    log_in(page, live_server, "root")

    page.goto(f"{live_server.url}/admin/audit/auditentry/")
    assert page.locator("select[name=action]").count() == 0  # no bulk delete
    assert page.locator(".object-tools a.addlink").count() == 0
    page.goto(f"{live_server.url}/admin/audit/auditentry/{entry.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    assert page.locator("a.deletelink").count() == 0
    assert re.search(r"merchant\.created", page.content())

    assert page.goto(f"{live_server.url}/admin/audit/auditentry/{entry.pk}/delete/").status == 403
    assert page.goto(f"{live_server.url}/admin/audit/auditentry/add/").status == 403
    assert AuditEntry.objects.filter(pk=entry.pk).count() == 1
