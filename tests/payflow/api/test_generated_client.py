"""The OpenAPI document's proof: a typed client generated from ``/v1/schema`` by
``openapi-python-client`` (in this test run, from the schema the server answers) drives
the whole merchant flow against a live server.

Any drift fails here: an operation, parameter or status the schema does not document
raises (``raise_on_unexpected_status``), a body that does not parse into the documented
model fails, and a member the schema does not describe lands in a model's
``additional_properties``, which must stay empty."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import attrs
import pytest

from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create

pytestmark = pytest.mark.django_db(transaction=True)

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}


@pytest.fixture(scope="module")
def generated(tmp_path_factory, request):
    """The client package, generated from the live server's schema."""
    live_server = request.getfixturevalue("live_server")
    out = tmp_path_factory.mktemp("client")
    schema_url = f"{live_server.url}/v1/schema?format=json"
    with urllib.request.urlopen(schema_url) as answer:  # noqa: S310 (our live server)
        (out / "schema.json").write_bytes(answer.read())
    (out / "config.yaml").write_text(
        "post_hooks: []\nproject_name_override: payflow-client\n"
        "package_name_override: payflow_client\n"
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            "schema.json",
            "--config",
            "config.yaml",
            "--fail-on-warning",
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out / "payflow-client"))
    try:
        yield importlib.import_module("payflow_client")
    finally:
        sys.path.remove(str(out / "payflow-client"))
        for name in [name for name in sys.modules if name.startswith("payflow_client")]:
            del sys.modules[name]


def described(value, path="body"):
    """Every member of a parsed body is one the schema describes."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            described(item, f"{path}[{index}]")
    elif attrs.has(type(value)):
        declared = [f.name for f in attrs.fields(type(value)) if f.name != "additional_properties"]
        if declared:  # a free-form object (metadata) has only additional properties
            assert value.additional_properties == {}, (path, value.additional_properties)
        for name in declared:
            described(getattr(value, name), f"{path}.{name}")


def call(module, client, **kwargs):
    response = module.sync_detailed(client=client, **kwargs)
    assert response.parsed is not None, (module.__name__, response.status_code, response.content)
    described(response.parsed)
    body = json.loads(response.content) if response.content else None
    return response, body


def test_the_generated_client_drives_the_whole_merchant_flow(generated, live_server):
    from payflow_client import AuthenticatedClient
    from payflow_client.api.balance import balance_retrieve
    from payflow_client.api.events import events_list, events_retrieve
    from payflow_client.api.payments import (
        payment_refunds_list,
        payments_capture,
        payments_create,
        payments_list,
        payments_retrieve,
        payments_update,
        refunds_create,
    )
    from payflow_client.api.refunds import refunds_retrieve
    from payflow_client.api.tokens import tokens_create
    from payflow_client.api.webhook_endpoints import (
        webhook_deliveries_list,
        webhook_endpoints_create,
        webhook_endpoints_delete,
        webhook_endpoints_list,
        webhook_endpoints_retrieve,
        webhook_endpoints_roll_secret,
        webhook_endpoints_update,
    )
    from payflow_client.models import (
        Capture,
        EndpointCreate,
        EndpointUpdate,
        ErrorOut,
        EventOut,
        PaymentCreate,
        PaymentOut,
        PaymentUpdate,
        RefundCreate,
        RefundOut,
        RollSecret,
        TokenCreate,
        TokenOut,
    )

    merchant = merchant_create(name="Generated Client Shop")
    secret = api_key_create(merchant=merchant).secret
    client = AuthenticatedClient(
        base_url=live_server.url, token=secret, raise_on_unexpected_status=True
    )

    _, token = call(tokens_create, client, body=TokenCreate.from_dict({"card": CARD}))
    assert token["id"].startswith("tok_")
    response, payment = call(
        payments_create,
        client,
        body=PaymentCreate.from_dict(
            {
                "amount": 4_000,
                "currency": "EUR",
                "token": token["id"],
                "cvc": "123",
                "capture": False,
                "metadata": {"order": "G-1"},
            }
        ),
        idempotency_key="generated-1",
    )
    assert isinstance(response.parsed, PaymentOut)
    assert (response.status_code, payment["status"]) == (201, "authorized")
    pid = payment["id"]
    _, captured = call(
        payments_capture, client, payment_id=pid, body=Capture.from_dict({"amount": 3_000})
    )
    assert captured["amount_captured"] == 3_000
    _, updated = call(
        payments_update,
        client,
        payment_id=pid,
        body=PaymentUpdate.from_dict({"metadata": {"note": "gift"}}),
    )
    assert updated["metadata"] == {"order": "G-1", "note": "gift"}
    response, refund = call(
        refunds_create, client, payment_id=pid, body=RefundCreate.from_dict({"amount": 500})
    )
    assert isinstance(response.parsed, RefundOut)
    _, again = call(refunds_retrieve, client, refund_id=refund["id"])
    assert again == refund
    _, listed = call(payments_list, client, limit=5)
    assert [item["id"] for item in listed["data"]] == [pid]
    _, refunds = call(payment_refunds_list, client, payment_id=pid)
    assert [item["id"] for item in refunds["data"]] == [refund["id"]]
    _, retrieved = call(payments_retrieve, client, payment_id=pid)
    assert retrieved["amount_refunded"] == 500
    call(balance_retrieve, client)

    # a decline: 402 card_error, parsed into the documented error model
    response, declined = call(
        payments_create,
        client,
        body=PaymentCreate.from_dict(
            {
                "amount": 900,
                "currency": "EUR",
                "card": {**CARD, "number": "4000000000000002", "cvc": "123"},
            }
        ),
    )
    assert response.status_code == 402
    assert isinstance(response.parsed, ErrorOut)
    assert declined["error"]["type"] == "card_error"

    # events: filtered, retrieved, each object the API's own body
    _, captures = call(events_list, client, type_="payment.captured")
    [event] = captures["data"]
    assert event["data"]["object"]["id"] == pid
    response, one = call(events_retrieve, client, event_id=event["id"])
    assert isinstance(response.parsed, EventOut)
    assert one == event

    # webhook endpoints: the whole CRUD
    _, endpoint = call(
        webhook_endpoints_create,
        client,
        body=EndpointCreate.from_dict(
            {"url": "http://127.0.0.1:9/hooks", "enabled_events": ["payment.captured"]}
        ),
    )
    assert endpoint["secret"].startswith("whsec_")
    eid = endpoint["id"]
    _, fetched = call(webhook_endpoints_retrieve, client, endpoint_id=eid)
    assert "secret" not in fetched
    _, changed = call(
        webhook_endpoints_update,
        client,
        endpoint_id=eid,
        body=EndpointUpdate.from_dict({"enabled_events": ["*"], "description": "all"}),
    )
    assert changed["enabled_events"] == ["*"]
    _, rolled = call(
        webhook_endpoints_roll_secret,
        client,
        endpoint_id=eid,
        body=RollSecret.from_dict({"expires_in": 60}),
    )
    assert rolled["secret"] != endpoint["secret"]
    _, every = call(webhook_endpoints_list, client)
    assert [item["id"] for item in every["data"]] == [eid]
    _, deliveries = call(webhook_deliveries_list, client, endpoint_id=eid)
    assert deliveries["data"] == []
    _, deleted = call(webhook_endpoints_delete, client, endpoint_id=eid)
    assert deleted["deleted"] is True
    # and an error the schema documents: a bad card number is a 400 in the error shape
    response = tokens_create.sync_detailed(
        client=client, body=TokenCreate.from_dict({"card": {**CARD, "number": "4242"}})
    )
    assert response.status_code == 400
    assert isinstance(response.parsed, ErrorOut)
    assert isinstance(
        call(tokens_create, client, body=TokenCreate.from_dict({"card": CARD}))[0].parsed, TokenOut
    )
