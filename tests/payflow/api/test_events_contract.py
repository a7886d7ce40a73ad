"""Events are the API's resources; the API's polish (issue 18, items 3 and 4).

Each test here failed before: ``data.object`` carried the outbox's raw payload (UUIDs,
``captured_amount``, ISO times), ``?type=`` and unknown query parameters were ignored,
``/v1/events/{id}``, ``POST /v1/payments/{id}`` and ``GET /v1/payments/{id}/refunds`` did
not exist, declines were 422 and error bodies had no ``request_id``."""

import pytest
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator

from audit.models import AuditEntry
from ledger import ids
from outbox.models import OutboxEvent
from payflow.api.events import event_body
from tests.payflow.api import openapi
from tests.payflow.api.conftest import assert_error, create_payment


def _lifecycle(api):
    """A manual-capture payment, captured, then partly refunded: GET's answer after each
    change, by (object id, version)."""
    seen = {}
    payment = create_payment(api, amount=5_000, capture=False, metadata={"order": "A-1"}).json()
    seen[(payment["id"], payment["version"])] = payment
    captured = api.post(f"/v1/payments/{payment['id']}/capture", {}, format="json").json()
    seen[(captured["id"], captured["version"])] = captured
    refund = api.post(
        f"/v1/payments/{payment['id']}/refunds", {"amount": 1_200}, format="json"
    ).json()
    seen[(refund["id"], refund["version"])] = refund
    after = api.get(f"/v1/payments/{payment['id']}").json()
    seen[(after["id"], after["version"])] = after
    return payment, refund, seen


def test_an_events_object_is_what_get_answered_at_that_version(api):
    payment, refund, seen = _lifecycle(api)
    events = api.get("/v1/events", {"limit": 100}).json()["data"]
    assert {event["data"]["object"]["id"] for event in events} == {payment["id"], refund["id"]}
    for event in events:
        obj = event["data"]["object"]
        key = (obj["id"], obj["version"])
        if key in seen:  # versions the API answered (intermediate ones were never answered)
            assert obj == seen[key], event["type"]
        assert event["object"] == "event"
        assert event["id"].startswith("evt_")
        assert event["livemode"] is False
        assert event["api_version"]
        # never an internal id or a raw column
        assert "merchant" not in obj
        assert "card_token" not in obj
        assert "captured_amount" not in obj
    latest = {}
    for event in reversed(events):  # oldest first
        latest[event["data"]["object"]["id"]] = event["data"]["object"]
    assert latest[payment["id"]] == api.get(f"/v1/payments/{payment['id']}").json()
    assert latest[refund["id"]] == api.get(f"/v1/refunds/{refund['id']}").json()


def test_every_event_and_every_webhook_body_is_valid_against_the_openapi_event_schema(api):
    _lifecycle(api)
    api.post("/v1/payouts", {"amount": 1, "currency": "EUR"}, format="json")  # refused: none
    events = api.get("/v1/events", {"limit": 100}).json()
    assert openapi.errors("EventListOut", events) == []
    for event in events["data"]:
        assert openapi.errors("EventOut", event) == [], event["type"]
        assert openapi.errors("EventOut", api.get(f"/v1/events/{event['id']}").json()) == []
        # a webhook's body is the same rendering (payflow.webhooks.dispatch sends event_body)
        row = OutboxEvent.objects.get(pk=ids.decode("event", event["id"]))
        assert event_body(row) == event
    # the schema is not a rubber stamp: a drifted body fails it
    drifted = {**events["data"][0], "data": {"object": {"object": "payment", "amount": "12"}}}
    assert openapi.errors("EventOut", drifted) != []


def test_an_update_carries_the_previous_values_of_what_changed(api):
    _payment, _, _ = _lifecycle(api)
    [captured] = api.get("/v1/events", {"type": "payment.captured"}).json()["data"]
    assert captured["data"]["previous_attributes"] == {
        "status": "authorized",
        "amount_captured": 0,
        "captured_at": None,
    }
    [created] = api.get("/v1/events", {"type": "payment.created"}).json()["data"]
    assert "previous_attributes" not in created["data"]


def test_events_filter_by_type_with_a_wildcard_and_by_creation_time(api):
    _lifecycle(api)
    every = api.get("/v1/events", {"limit": 100}).json()["data"]
    captured = api.get("/v1/events", {"type": "payment.captured"}).json()["data"]
    assert [event["type"] for event in captured] == ["payment.captured"]
    refunds = api.get("/v1/events", {"type": "refund.*"}).json()["data"]
    assert {event["type"] for event in refunds} == {"refund.created", "refund.succeeded"}
    assert len(api.get("/v1/events", {"type": "*", "limit": 100}).json()["data"]) == len(every)
    newest = every[0]["created"]
    later = api.get("/v1/events", {"created[gte]": newest + 3600}).json()["data"]
    assert later == []
    assert len(api.get("/v1/events", {"created[lte]": newest, "limit": 100}).json()["data"]) == len(
        every
    )
    assert_error(api.get("/v1/events", {"type": "payment.nope"}), 400, "parameter_invalid", "type")
    assert_error(api.get("/v1/events", {"type": "nope*"}), 400, "parameter_invalid", "type")


def test_one_event_is_retrieved_in_json_and_another_merchants_is_not_found(api, other_api):
    create_payment(api)
    newest = api.get("/v1/events", {"limit": 1}).json()["data"][0]
    assert api.get(f"/v1/events/{newest['id']}").json() == newest
    assert_error(other_api.get(f"/v1/events/{newest['id']}"), 404, "resource_missing", "id")
    missing = api.get("/v1/events/evt_" + "0" * 32)
    assert missing["Content-Type"] == "application/json"
    assert_error(missing, 404, "resource_missing", "id")
    not_an_id = assert_error(api.get("/v1/events/4242424242424242"), 404, "resource_missing")
    assert "4242" not in not_an_id["message"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/payments", {"currency": "EUR"}),
        ("/v1/payments", {"metadata[order]": "A-1"}),
        ("/v1/refunds", {"expand[]": "payment"}),
        ("/v1/events", {"object_id": "x"}),
        ("/v1/balance", {"currency": "EUR"}),
        ("/v1/ping", {"verbose": "1"}),
    ],
)
def test_unknown_query_parameters_are_refused_by_name(api, path, params):
    error = assert_error(api.get(path, params), 400, "parameter_unknown", next(iter(params)))
    assert error["type"] == "invalid_request_error"


def test_a_write_takes_no_query_parameters(api):
    payment = create_payment(api).json()
    refused = api.post(f"/v1/payments/{payment['id']}/refunds?amount=5", {}, format="json")
    assert_error(refused, 400, "parameter_unknown", "amount")
    assert api.get(f"/v1/payments/{payment['id']}").json()["amount_refunded"] == 0


def test_every_endpoint_takes_exactly_the_query_parameters_its_schema_documents():
    document = SchemaGenerator().get_schema(request=None, public=True)
    resolver = get_resolver()
    checked = 0
    for pattern in resolver.url_patterns:
        if not str(pattern.pattern).startswith("v1/"):
            continue
        for inner in pattern.url_patterns:
            view = getattr(inner.callback, "view_class", None)
            if view is None or not hasattr(view, "query_parameters") or not hasattr(view, "get"):
                continue
            path = "/v1/" + str(inner.pattern).replace("<str:", "{").replace(">", "}")
            operation = document["paths"][path]["get"]
            documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert documented == set(view.query_parameters), path
            checked += 1
    assert checked >= 12


def test_a_payments_metadata_is_updated_merged_audited_and_published(api):
    payment = create_payment(api, metadata={"order": "A-1", "gift": "yes"}).json()
    updated = api.post(
        f"/v1/payments/{payment['id']}",
        {"metadata": {"order": "A-2", "gift": "", "note": "call first"}},
        format="json",
        HTTP_IF_MATCH=f'"{payment["version"]}"',
    )
    assert updated.status_code == 200, updated.content
    body = updated.json()
    assert body["metadata"] == {"order": "A-2", "note": "call first"}
    assert (body["version"], body["status"], body["amount"]) == (
        payment["version"] + 1,
        "captured",
        payment["amount"],
    )
    assert api.get(f"/v1/payments/{payment['id']}").json() == body
    [event] = api.get("/v1/events", {"type": "payment.updated"}).json()["data"]
    assert event["data"]["object"] == body
    assert event["data"]["previous_attributes"] == {"metadata": {"order": "A-1", "gift": "yes"}}
    pk = str(ids.decode("payment", payment["id"]))
    assert AuditEntry.objects.filter(object_id=pk, event_type="payment.updated").count() == 1
    # a stale version is refused, nothing changes
    stale = api.post(
        f"/v1/payments/{payment['id']}",
        {"metadata": {"order": "A-3"}},
        format="json",
        HTTP_IF_MATCH=f'"{payment["version"]}"',
    )
    assert_error(stale, 409, "concurrent_update")
    # the same metadata again changes nothing: no new version, no event
    again = api.post(f"/v1/payments/{payment['id']}", {"metadata": {"order": "A-2"}}, format="json")
    assert again.json()["version"] == body["version"]
    assert len(api.get("/v1/events", {"type": "payment.updated"}).json()["data"]) == 1


def test_a_metadata_update_refuses_unknown_fields_card_numbers_and_too_many_keys(api):
    payment = create_payment(api).json()
    path = f"/v1/payments/{payment['id']}"
    assert_error(api.post(path, {"amount": 1}, format="json"), 400, "parameter_unknown", "amount")
    refused = api.post(path, {"metadata": {"n": "4111 1111 1111 1111"}}, format="json")
    assert_error(refused, 400, "card_number_not_allowed", "metadata[n]")
    many = {f"k{i}": "v" for i in range(50)}
    assert api.post(path, {"metadata": many}, format="json").status_code == 200
    assert_error(
        api.post(path, {"metadata": {"one": "more"}}, format="json"), 400, "invalid_request"
    )
    assert len(api.get(path).json()["metadata"]) == 50


def test_a_payments_refunds_are_listed_under_it(api):
    payment = create_payment(api, amount=4_000).json()
    other = create_payment(api, amount=4_000).json()
    first = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 1_000}, format="json")
    second = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 500}, format="json")
    api.post(f"/v1/payments/{other['id']}/refunds", {"amount": 700}, format="json")
    page = api.get(f"/v1/payments/{payment['id']}/refunds").json()
    assert [refund["id"] for refund in page["data"]] == [second.json()["id"], first.json()["id"]]
    assert page["data"][0] == api.get(f"/v1/refunds/{second.json()['id']}").json()
    limited = api.get(f"/v1/payments/{payment['id']}/refunds", {"limit": 1}).json()
    assert (len(limited["data"]), limited["has_more"]) == (1, True)
    assert_error(api.get("/v1/payments/pay_" + "0" * 32 + "/refunds"), 404, "resource_missing")


def test_a_decline_is_402_card_error_and_every_error_body_carries_its_request_id(api, anonymous):
    declined = create_payment(api, number="4000000000000002")
    error = assert_error(declined, 402, "card_declined")
    assert error["type"] == "card_error"
    assert error["request_id"] == declined["X-Request-ID"]
    for response in (
        anonymous.get("/v1/payments"),
        api.get("/v1/payments/pay_" + "0" * 32),
        api.get("/v1/payments", {"limit": "0"}),
        api.post("/v1/payments", {"amount": 1}, format="json", HTTP_X_REQUEST_ID="merchant-req-1"),
    ):
        body = response.json()
        assert body["error"]["request_id"] == response["X-Request-ID"], body
    assert body["error"]["request_id"] == "merchant-req-1"
