"""An auditor finds an object by the id people know and reads its history.

Reproduced before: a history was reachable only by typing a URL with the internal UUID
(``/audit/records/pay_…`` and a search for ``pay_…`` found nothing); the page showed each
change as two Python-repr dicts in a narrow column, amounts in minor units, and no proof
that an entry is in a signed checkpoint."""

import pytest

from audit import search
from audit.models import AuditEntry, Checkpoint, LogLeaf
from ledger import ids
from ledger.models import Transaction
from ledger.services.api_keys import api_key_create
from ledger.services.refunds import refund_create
from payflow.platform import context
from tests.audit.conftest import raw, sequence, triggers_dropped
from tests.ledger.conftest import pay

PAN = "4111111111111111"


@pytest.fixture
def refunded(merchant):
    """A 50.00 EUR payment refunded 12.50 EUR, sequenced and sealed."""
    payment = pay(merchant, amount=5000, external_reference="order-1234")
    refund = refund_create(payment=payment, amount=1250)
    sequence()
    return Transaction.objects.get(pk=payment.pk), refund


def test_a_history_opens_by_public_id_and_the_search_box_goes_there(client, auditor, refunded):
    payment, refund = refunded
    public = ids.encode("payment", payment.pk)
    page = client.get(f"/audit/records/{public}")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"History of <code>{public}</code>" in text
    assert text.count("payment.") >= 3  # created, authorized, captured, refunded…
    found = client.get("/audit/search", {"q": public})
    assert (found.status_code, found["Location"]) == (302, f"/audit/records/{public}")
    refund_id = ids.encode("refund", refund.pk)
    assert (
        client.get("/audit/search", {"q": refund_id})["Location"] == f"/audit/records/{refund_id}"
    )
    refund_page = client.get(f"/audit/records/{refund_id}").content.decode()
    kinds = set(
        AuditEntry.objects.filter(object_id=str(refund.pk)).values_list("event_type", flat=True)
    )
    assert kinds
    assert all(f'<strong class="event">{kind}</strong>' in refund_page for kind in kinds)


def test_a_public_id_of_the_wrong_kind_or_of_nothing_is_not_found_nor_echoed(
    client, auditor, refunded
):
    payment, _ = refunded
    for wrong in (ids.encode("refund", payment.pk), "pay_" + "0" * 32, PAN):
        page = client.get(f"/audit/records/{wrong}")
        assert page.status_code == 404
        assert wrong not in page.content.decode()
        assert "No such object" in page.content.decode()


def test_the_search_finds_merchants_by_name_and_transactions_by_reference(
    client, auditor, merchant, refunded
):
    payment, _ = refunded
    part = merchant.name.split()[-1].lower()  # any part of the name, any case
    page = client.get("/audit/search", {"q": part}).content.decode()
    assert ids.encode("merchant", merchant.pk) in page
    assert f"merchant {merchant.name}" in page
    assert "merchant.created" in page
    page = client.get("/audit/search", {"q": "order-1234"}).content.decode()
    assert ids.encode("payment", payment.pk) in page
    assert f"payment of 50.00 EUR, {merchant.name}" in page
    assert "payment.captured" in page


def test_the_search_filters_by_event_type_actor_and_time(client, auditor, merchant):
    key = api_key_create(merchant=merchant).api_key
    with context.replaced(
        context.AuditContext(actor_type="api_key", actor_id=str(key.pk), actor_label=str(key))
    ):
        by_key = pay(merchant, amount=700)
    other = pay(merchant, amount=800)  # by the tests' own actor
    sequence()
    by_event = search.search(event_type="payment.captured")
    assert len(by_event.entries) == 2
    assert {row["event_type"] for row in search.search(event_type="payment.*").entries} >= {
        "payment.created",
        "payment.captured",
    }
    for typed in (str(key), key.prefix, str(key.pk)):  # as the admin shows it, its prefix, id
        objects = {row["object_id"] for row in search.search(actor=typed).entries}
        assert str(by_key.pk) in objects, typed
        assert str(other.pk) not in objects, typed
    assert search.search(actor="command:nobody").entries == []
    first = AuditEntry.objects.order_by("id").first()
    assert search.search(until=first.created_at).entries == []
    assert len(search.search(since=first.created_at).entries) == AuditEntry.objects.count()
    page = client.get("/audit/search", {"event_type": "payment.captured", "actor": str(key)})
    assert page.content.decode().count("<td>payment.captured</td>") == 1


def test_search_results_come_a_page_at_a_time(client, auditor, merchant, monkeypatch):
    monkeypatch.setattr(search, "PAGE", 3)
    pay(merchant)
    pay(merchant)
    first = client.get("/audit/search", {"event_type": "payment.*"}).content.decode()
    assert first.count("<td>payment.") == 3
    assert 'rel="next"' in first
    after = search.search(event_type="payment.*").before
    second = client.get("/audit/search", {"event_type": "payment.*", "before": after})
    assert second.content.decode().count("<td>payment.") == 3


def test_what_names_nothing_is_said_without_echoing_it(client, auditor, refunded):
    page = client.get("/audit/search", {"q": PAN})
    assert page.status_code == 200
    assert "Nothing matches: no object has that id, name or reference" in page.content.decode()
    assert PAN not in page.content.decode()
    page = client.get("/audit/search", {"actor": PAN})
    assert PAN not in page.content.decode()
    bad = client.get("/audit/search", {"q": "order-1234", "since": PAN})
    assert bad.status_code == 400
    assert "since must be an ISO 8601 time with its UTC offset" in bad.content.decode()
    assert PAN not in bad.content.decode()


def test_the_timeline_shows_each_change_field_by_field_in_major_units(client, auditor, refunded):
    payment, _ = refunded
    page = client.get(f"/audit/records/{ids.encode('payment', payment.pk)}").content.decode()
    # the refund's change to the payment: refunded 0.00 → 12.50 EUR, raw minor units on hover
    assert (
        '<th scope="row">refunded_amount</th>\n'
        '        <td><span title="0 minor units">0.00 EUR</span></td>\n'
        '        <td><span title="1250 minor units">12.50 EUR</span></td>'
    ) in page
    assert '<span title="5000 minor units">50.00 EUR</span>' in page  # the amount, at insert
    assert "{&#x27;" not in page  # no Python repr of a dict
    assert "{'" not in page
    assert "tests" in page  # the actor


def test_a_journal_entrys_lines_read_as_postings(client, auditor, refunded):
    journal = AuditEntry.objects.filter(object_type="ledger.journalentry").first()
    page = client.get(f"/audit/records/ledger.journalentry/{journal.object_id}").content.decode()
    assert "account" in page
    assert " EUR; " in page  # one posting after another, each in major units


@pytest.mark.django_db(transaction=True)  # dropping triggers is DDL: it commits
def test_each_entry_is_proven_in_the_latest_checkpoint_and_a_bad_node_shows(
    client, auditor, refunded
):
    payment, _ = refunded
    url = f"/audit/records/{ids.encode('payment', payment.pk)}"
    entries = AuditEntry.objects.filter(object_id=str(payment.pk)).count()
    size = Checkpoint.objects.order_by("-size").first().size
    page = client.get(url).content.decode()
    assert page.count("in checkpoint ✓") == entries
    assert page.count("/audit/log/proof/inclusion?index=") == entries
    assert f"&amp;size={size}" in page
    index = (
        LogLeaf.objects.filter(
            entry_id__in=AuditEntry.objects.filter(object_id=str(payment.pk)).values("id")
        )
        .order_by("index")[0]
        .index
    )
    proof = client.get("/audit/log/proof/inclusion", {"index": index, "size": size}).json()
    assert proof["size"] == size
    # a stored node of the tree altered (the first entry's sibling leaf, in its proof): the
    # proof through it no longer reaches the signed root
    assert index ^ 1 < size
    with triggers_dropped():
        raw("UPDATE audit_lognode SET hash = %s WHERE `key` = %s", [b"\x00" * 32, index ^ 1])
    page = client.get(url).content.decode()
    assert "in checkpoint ✗" in page


def test_the_objects_an_entry_names_read_by_their_public_ids(client, auditor, merchant, refunded):
    payment, _ = refunded
    page = client.get(f"/audit/records/{ids.encode('payment', payment.pk)}").content.decode()
    merchant_id = ids.encode("merchant", merchant.pk)
    assert f'<span title="{merchant.pk}">{merchant_id}</span>' in page
    assert f'<span title="{payment.card_token_id}">tok_{payment.card_token_id.hex}</span>' in page


@pytest.mark.parametrize(
    "query",
    [
        {"q": PAN, "since": "abc"},
        {"event_type": PAN},
        {"actor": PAN, "event_type": "payment.*"},
        {"q": PAN, "event_type": "payment.*"},
    ],
)
def test_no_box_writes_back_a_card_number(client, auditor, refunded, query):
    page = client.get("/audit/search", query).content.decode()
    assert PAN not in page


@pytest.mark.parametrize(
    "query",
    [
        {"event_type": "payment.*", "before": "²"},
        {"event_type": "x", "since": "0001-01-01T00:00:00+01:00"},
        {"event_type": "x", "until": "9999-12-31T23:59:59-01:00"},
    ],
)
def test_malformed_filters_are_a_400_or_ignored_never_a_500(client, auditor, db, query):
    assert client.get("/audit/search", query).status_code in (200, 400)


def test_a_history_proves_its_entries_in_a_bounded_number_of_queries(
    client, auditor, refunded, django_assert_max_num_queries
):
    payment, _ = refunded
    for _ in range(6):
        refund_create(payment=Transaction.objects.get(pk=payment.pk), amount=100)
    sequence()
    with django_assert_max_num_queries(16):  # was one proof query per entry (17 for 8)
        client.get(f"/audit/records/{ids.encode('payment', payment.pk)}")


@pytest.mark.django_db(transaction=True)
def test_a_history_with_missing_nodes_shows_them_unproven_not_a_500(client, auditor, refunded):
    payment, _ = refunded
    with triggers_dropped():
        raw("DELETE FROM audit_lognode")
    page = client.get(f"/audit/records/{ids.encode('payment', payment.pk)}")
    assert page.status_code == 200
    assert "in checkpoint ✗" in page.content.decode()
