"""The operators' CSV export of a filtered transaction list: every transaction the list's
filters and search select (not only the page), amounts in major units beside the minor
units, streamed, safe to open in a spreadsheet.

Reproduced before: the admin had no export at all."""

import csv
import datetime
import io

import pytest
from django.utils import timezone

from ledger import ids
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from tests.ledger.conftest import pay

URL = "/admin/ledger/transaction/export.csv"


@pytest.fixture
def shops(db):
    return merchant_create(name="Boulangerie Martin"), merchant_create(name="=HYPERLINK(1)")


def rows_of(response):
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_list_links_its_export_with_its_filters(client, operator, shops):
    client.force_login(operator)
    page = client.get("/admin/ledger/transaction/", {"type__exact": "payment"}).content.decode()
    assert f'href="{URL}?type__exact=payment" id="export-csv"' in page


def test_the_days_payments_export_with_every_row_in_major_units(client, operator, shops):
    bakery, odd = shops
    payments = [pay(bakery, amount=1250 + n) for n in range(3)]
    refund_create(payment=payments[0], amount=250)
    pay(odd, amount=999, currency="JPY")
    client.force_login(operator)
    # as the list's "Today" date filter links it
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today, tomorrow = str(today), str(today + datetime.timedelta(days=1))
    rows = rows_of(
        client.get(
            URL,
            {"type__exact": "payment", "initiated_at__gte": today, "initiated_at__lt": tomorrow},
        )
    )
    assert len(rows) == 4  # every payment of the day; the refund is not a payment
    by_id = {row["id"]: row for row in rows}
    first = by_id[ids.encode("payment", payments[0].pk)]
    assert (first["amount"], first["amount_minor"], first["currency"]) == ("12.50", "1250", "EUR")
    assert (first["refunded"], first["refunded_minor"]) == ("2.50", "250")
    assert first["merchant"] == ids.encode("merchant", bakery.pk)
    assert first["merchant_name"] == "Boulangerie Martin"
    yen = next(row for row in rows if row["currency"] == "JPY")
    assert (yen["amount"], yen["merchant_name"]) == ("999", "'=HYPERLINK(1)")  # not a formula


def test_the_export_follows_the_lists_search(client, operator, shops, monkeypatch):
    bakery, _ = shops
    wanted = pay(bakery, amount=700)
    pay(bakery, amount=800)
    client.force_login(operator)
    rows = rows_of(client.get(URL, {"q": ids.encode("payment", wanted.pk)}))
    assert [row["id"] for row in rows] == [ids.encode("payment", wanted.pk)]


def test_auditors_may_export_and_visitors_may_not(client, auditor, shops):
    assert client.get(URL).status_code == 302  # to the login page
    client.force_login(auditor)
    assert rows_of(client.get(URL)) == []


def test_filters_that_cannot_apply_are_refused_plainly(client, operator, shops):
    client.force_login(operator)
    response = client.get(URL, {"initiated_at__gte": "4111111111111111"})
    assert response.status_code == 400
    assert b"These filters cannot be applied" in response.content
    assert b"4111111111111111" not in response.content
