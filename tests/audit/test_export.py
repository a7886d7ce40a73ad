"""Evidence an auditor can ask for by the ids they know, read in a spreadsheet, and download
in full however large the range: the export streams, a chunk of entries at a time.

Reproduced before: the export asked for an object's internal type and UUID (``pay_…`` was
refused), a merchant by its UUID only, offered no CSV, and built the whole bundle in memory
(at most 10,000 entries)."""

import csv
import io
import json

import pytest

from audit import evidence
from audit.models import AuditEntry, Checkpoint
from ledger import ids
from ledger.models import Transaction
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from payflow.platform import context, spreadsheets
from tests.audit.conftest import raw, sequence, triggers_dropped
from tests.audit.test_offline_verifier import Verifier
from tests.ledger.conftest import pay

PAN = "4111111111111111"


@pytest.fixture
def refunded(merchant):
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=1250)
    sequence()
    return Transaction.objects.get(pk=payment.pk)


def download(client, **query):
    response = client.get("/audit/export", query)
    assert response.status_code == 200, response.content.decode()
    assert response.streaming  # never built whole in memory
    return response, b"".join(response.streaming_content)


def test_an_object_is_exported_by_its_public_id_and_the_bundle_verifies_offline(
    client, auditor, refunded, tmp_path
):
    public = ids.encode("payment", refunded.pk)
    response, body = download(client, object=public)
    by_uuid = json.loads(
        download(client, object_type="ledger.transaction", object_id=str(refunded.pk))[1]
    )
    bundle = json.loads(body)
    assert bundle == by_uuid
    assert bundle["complete_objects"] == [["ledger.transaction", str(refunded.pk)]]
    count = AuditEntry.objects.filter(object_id=str(refunded.pk)).count()
    assert int(response["X-Payflow-Entries"]) == len(bundle["entries"]) == count
    result = Verifier(tmp_path)(body)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_merchant_is_exported_by_its_acct_id(client, auditor, merchant, refunded):
    by_acct = json.loads(download(client, merchant=ids.encode("merchant", merchant.pk))[1])
    by_uuid = json.loads(download(client, merchant=str(merchant.pk))[1])
    assert by_acct == by_uuid
    assert {e["entry"]["object_type"] for e in by_acct["entries"]} >= {
        "ledger.merchant",
        "ledger.transaction",
    }


def test_the_csv_holds_the_same_entries_readable(client, auditor, refunded):
    public = ids.encode("payment", refunded.pk)
    bundle = json.loads(download(client, object=public)[1])
    response, body = download(client, object=public, format="csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [row["hash"] for row in rows] == [entry["hash"] for entry in bundle["entries"]]
    assert [int(row["index"]) for row in rows] == [entry["index"] for entry in bundle["entries"]]
    assert {row["public_id"] for row in rows} == {public}
    assert rows[0]["changes"].startswith("amount: — → 50.00 EUR")
    changed = [row for row in rows if "refunded_amount: 0.00 EUR → 12.50 EUR" in row["changes"]]
    assert [row["event_type"] for row in changed] == ["payment.partially_refunded"]
    for row, entry in zip(rows, bundle["entries"], strict=True):
        assert row["body"] == json.dumps(entry["entry"], ensure_ascii=False, separators=(",", ":"))
        assert row["actor_id"] == "tests"


def test_a_csv_cell_never_starts_a_formula(client, auditor, db):
    with context.bind(reason='=HYPERLINK("http://evil.example","click")'):
        shop = merchant_create(name="@SUM(1+1) Shop")
    sequence()
    _, body = download(client, merchant=ids.encode("merchant", shop.pk), format="csv")
    row = next(csv.DictReader(io.StringIO(body.decode())))
    assert row["reason"] == '\'=HYPERLINK("http://evil.example","click")'
    assert row["changes"].startswith("default_currency:")  # starts with a field name
    assert spreadsheets.cell("-5") == "-5"  # a negative number stays a number
    assert spreadsheets.cell("-12.50") == "-12.50"
    assert spreadsheets.cell("-cmd") == "'-cmd"
    assert spreadsheets.cell("+1") == "'+1"


def test_a_large_range_streams_a_chunk_at_a_time_in_log_order(
    client, auditor, merchant, monkeypatch, tmp_path
):
    for amount in (100, 200, 300):
        pay(merchant, amount=amount)
    sequence()
    monkeypatch.setattr(evidence, "CHUNK", 4)
    first = AuditEntry.objects.order_by("id").first().created_at.isoformat()
    response = client.get("/audit/export", {"since": first})
    chunks = list(response.streaming_content)
    size = Checkpoint.objects.order_by("-size").first().size
    assert int(response["X-Payflow-Entries"]) == size
    assert len(chunks) >= size // 4  # a chunk of 4 entries at a time
    body = b"".join(chunks)
    assert body.count(b"\n") == size + 2  # one entry per line: what the progress bar counts
    indexes = [entry["index"] for entry in json.loads(body)["entries"]]
    assert indexes == list(range(size))
    result = Verifier(tmp_path)(body)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"object": PAN}, "no payment, refund, chargeback, payout, merchant or card token"),
        ({"object": "pay_" + "0" * 32}, "no payment, refund, chargeback, payout, merchant"),
        ({"merchant": PAN}, "no merchant has that id: give its acct_… id"),
        ({"merchant": "pay_" + "1" * 32}, "no merchant has that id"),
        ({"merchant": "acct_" + "1" * 32}, "no merchant has that id"),
        ({"object_type": PAN, "object_id": "x"}, "no entry of this selection is sealed"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since must be an ISO 8601 time"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until must be an ISO 8601 time"),
        ({"merchant": "acct_x", "format": "xml"}, "format must be json or csv"),
        ({"since": PAN}, "since must be an ISO 8601 time"),
    ],
)
def test_an_export_that_names_nothing_says_so_without_echoing_it(
    client, auditor, refunded, query, says
):
    response = client.get("/audit/export", query)
    assert response.status_code == (409 if "no entry" in says else 400)
    page = response.content.decode()
    assert says in page
    assert PAN not in page
    assert 'id="export-form"' in page


def test_the_export_page_loads_its_progress_script_from_its_own_origin(client, auditor, db):
    page = client.get("/audit/export").content.decode()
    assert '<script src="/static/audit/export.js" defer></script>' in page
    assert '<progress id="export-progress" hidden></progress>' in page


@pytest.mark.parametrize(
    "query",
    [
        {"object": PAN, "show": "form"},
        {"trusted": PAN},
        {"merchant": PAN, "show": "form"},
        {"object_type": PAN, "object_id": PAN, "show": "form"},
        {"since": PAN, "show": "form"},
    ],
)
def test_the_form_writes_back_only_what_names_something(client, auditor, refunded, query):
    page = client.get("/audit/export", query).content.decode()
    assert PAN not in page


def test_a_form_link_keeps_what_it_names(client, auditor, refunded, merchant):
    public = ids.encode("payment", refunded.pk)
    shop = ids.encode("merchant", merchant.pk)
    page = client.get("/audit/export", {"object": public, "merchant": shop, "show": "form"})
    assert f'value="{public}"' in page.content.decode()
    assert f'value="{shop}"' in page.content.decode()


def test_an_export_the_selection_changed_under_ends_with_a_failure_line(refunded, monkeypatch):
    prepared = evidence.evidence_prepare(
        object_type="ledger.transaction", object_id=str(refunded.pk)
    )
    chunks = prepared.bundle_chunks()
    next(chunks)  # the head has gone out: the count was made
    # as the archiver would, while the download runs: the entries leave the live table
    original = evidence.LogLeaf.objects.filter

    def without_rows(*args, **kwargs):
        return original(*args, **kwargs).none()

    monkeypatch.setattr(evidence.LogLeaf.objects, "filter", without_rows)
    rest = "".join(chunks)
    assert rest.strip().startswith("EXPORT FAILED: 0 of the ")
    with pytest.raises(json.JSONDecodeError):
        json.loads('{"entries": [' + rest)


@pytest.mark.django_db(transaction=True)  # dropping triggers is DDL: it commits
def test_a_tree_missing_nodes_fails_the_export_before_it_claims_success(client, auditor, refunded):
    with triggers_dropped():
        raw("DELETE FROM audit_lognode")
    response = client.get("/audit/export", {"object": ids.encode("payment", refunded.pk)})
    body = b"".join(response.streaming_content).decode()
    assert "EXPORT FAILED: the stored tree lacks nodes the inclusion proofs need" in body
    csv_body = b"".join(
        client.get(
            "/audit/export", {"object": ids.encode("payment", refunded.pk), "format": "csv"}
        ).streaming_content
    ).decode()
    assert csv_body.splitlines()[-1].startswith("EXPORT FAILED,")
