"""What an operator reads in the admin: public ids where a person reads an id, proper names,
money in major units, a payment's journal lines and where its audit history is.

Reproduced before: titles and breadcrumbs read ``payment 01a2…-… captured``; the journal
and outbox lists showed UUIDs; the index said "Journal entrys" and "Api keys"; amounts
read "5000 (50.00 EUR)"; a payment's page had no journal lines; the history's changes
were ``refunded_amount: 0 → 1250``."""

import pytest
from django.db.models import Q

from audit.models import AuditEntry
from ledger import ids
from ledger.models import JournalLine
from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from outbox.models import OutboxEvent
from tests.ledger.conftest import pay


@pytest.fixture
def merchant(db):
    return merchant_create(name="Boulangerie Martin")


@pytest.fixture
def refunded(merchant):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=1250)
    return payment


def test_the_index_names_models_properly(client, operator):
    client.force_login(operator)
    page = client.get("/admin/").content.decode()
    assert "Journal entries" in page
    assert "API keys" in page
    assert "entrys" not in page
    assert "Api keys" not in page


def test_a_payments_page_reads_by_public_id_in_major_units(client, operator, refunded):
    client.force_login(operator)
    public = ids.encode("payment", refunded.pk)
    page = client.get(f"/admin/ledger/transaction/{refunded.pk}/change/").content.decode()
    assert f"<title>{public} | View transaction | PayFlow admin</title>" in page
    assert f"&rsaquo; {public}\n" in page  # the breadcrumb
    assert '<span class="money" title="5000 minor units">50.00 EUR</span>' in page
    assert "5000 (50.00 EUR)" not in page
    assert "refunded_amount: 0.00 EUR → 12.50 EUR" in page  # the audit history's change


def test_a_payments_page_shows_its_journal_lines(client, operator, refunded):
    client.force_login(operator)
    page = client.get(f"/admin/ledger/transaction/{refunded.pk}/change/").content.decode()
    lines = JournalLine.objects.filter(
        Q(entry__transaction=refunded) | Q(entry__transaction__parent=refunded)
    )  # the payment's and its refund's
    assert lines.filter(entry__transaction__parent=refunded).count() >= 2
    assert page.count("<tr class='journal-line'>") == lines.count()
    assert '<table id="journal-lines">' in page or "<table id='journal-lines'>" in page
    for line in lines.select_related("account"):
        assert f"/admin/ledger/account/{line.account_id}/change/" in page
    assert '<span class="money" title="5000 minor units">50.00 EUR</span></td>' in page


def test_the_audit_log_link_is_there_for_auditors_only(client, operator, auditor, refunded):
    public = ids.encode("payment", refunded.pk)
    url = f"/admin/ledger/transaction/{refunded.pk}/change/"
    client.force_login(operator)
    assert 'id="audit-record-link"' not in client.get(url).content.decode()
    client.force_login(auditor)
    page = client.get(url).content.decode()
    assert f'<a href="/audit/records/{public}" id="audit-record-link">' in page


def test_the_outbox_list_names_objects_by_public_id_and_finds_them_by_it(
    client, operator, refunded
):
    client.force_login(operator)
    public = ids.encode("payment", refunded.pk)
    page = client.get("/admin/outbox/outboxevent/").content.decode()
    assert public in page
    found = client.get("/admin/outbox/outboxevent/", {"q": public}).content.decode()
    events = OutboxEvent.objects.filter(aggregate_id=str(refunded.pk)).count()
    assert found.count(f'<td class="field-object">{public}</td>') == events
    assert "0 results" in client.get("/admin/outbox/outboxevent/", {"q": "pay_zz"}).content.decode()


def test_the_journal_list_names_transactions_by_public_id(client, operator, refunded):
    client.force_login(operator)
    page = client.get("/admin/ledger/journalentry/").content.decode()
    assert ids.encode("payment", refunded.pk) in page


def found(client, path, term):
    response = client.get(path, {"q": term})
    assert response.status_code == 200
    return response.context["cl"].result_count


def test_every_list_finds_objects_by_the_ids_people_type(client, operator, merchant, refunded):
    client.force_login(operator)
    payment = ids.encode("payment", refunded.pk)
    token = ids.encode("token", refunded.card_token_id)
    shop = ids.encode("merchant", merchant.pk)
    key = api_key_create(merchant=merchant).api_key
    cards = "/admin/ledger/cardtoken/"
    assert found(client, cards, token) == 1
    assert found(client, cards, shop) == 1  # the merchant's cards
    assert found(client, cards, "tok_" + "0" * 32) == 0
    assert found(client, cards, "tok_nonsense") == 0  # a malformed id: nothing, not an error
    journal = "/admin/ledger/journalentry/"
    refund = refunded.children.get()
    assert found(client, journal, payment) == 2  # the capture's and the refund's entries
    assert found(client, journal, ids.encode("refund", refund.pk)) == 1
    entries = "/admin/audit/auditentry/"
    assert (
        found(client, entries, payment)
        == AuditEntry.objects.filter(object_id=str(refunded.pk)).count()
    )
    assert found(client, entries, "pay_zz") == 0
    keys = "/admin/ledger/apikey/"
    assert found(client, keys, str(key)) == 1  # as the list shows it: sk_test_<prefix>…
    assert found(client, keys, f"sk_live_{key.prefix}") == 0  # the other mode
    assert found(client, keys, key.prefix) == 1


def test_journal_lines_read_in_major_units(client, operator, refunded):
    client.force_login(operator)
    page = client.get("/admin/ledger/journalline/").content.decode()
    assert '<span class="money" title="-1250 minor units">-12.50 EUR</span>' in page


PAN = "4111111111111111"


@pytest.mark.parametrize(
    "path",
    ["/admin/ledger/transaction/", "/admin/ledger/cardtoken/", "/admin/audit/auditentry/"],
)
def test_a_card_number_typed_into_a_search_box_is_neither_searched_nor_shown(
    client, operator, refunded, path
):
    client.force_login(operator)
    response = client.get(path, {"q": PAN})
    assert response.status_code == 302
    assert PAN not in response["Location"]
    page = client.get(response["Location"], follow=True).content.decode()
    assert PAN not in page
    assert "looked like a card number" in page
    export = client.get("/admin/ledger/transaction/export.csv", {"q": PAN})
    assert export.status_code == 400
    assert PAN.encode() not in export.content


def test_an_amount_typed_wrong_is_not_written_back(client, operator, refunded):
    client.force_login(operator)
    response = client.post(
        f"/admin/ledger/transaction/{refunded.pk}/refund/",
        {"amount": PAN, "reason": "typo", "expected_version": str(refunded.version + 1)},
    )
    assert response.status_code == 400
    assert PAN not in response.content.decode()
    assert "amount must be at most" in response.content.decode()


def test_the_audit_entries_list_names_objects_by_public_id_in_one_query(
    client, operator, merchant, refunded, django_assert_max_num_queries
):
    client.force_login(operator)
    with django_assert_max_num_queries(12):  # not one query per row
        page = client.get("/admin/audit/auditentry/").content.decode()
    assert f'<td class="field-object">{ids.encode("payment", refunded.pk)}</td>' in page
    assert f'<td class="field-object">{ids.encode("merchant", merchant.pk)}</td>' in page
    refund = refunded.children.get()
    assert f'<td class="field-object">{ids.encode("refund", refund.pk)}</td>' in page
