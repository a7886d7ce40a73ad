"""``/v1/webhook_endpoints``: create, list, retrieve, update, delete, roll the secret; where
a URL may point (SSRF) in each mode."""

import pytest

from ledger.services.api_keys import api_key_create
from payflow.models import WebhookEndpoint
from tests.payflow.api.conftest import RecordingClient, assert_error

HOOK = "http://127.0.0.1:9/hooks"


@pytest.fixture
def live_api(request, merchant):
    client = RecordingClient()
    secret = api_key_create(merchant=merchant, mode="live").secret
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    request.node.recording_clients.append(client)
    return client


def create(api, url=HOOK, events=("*",), **extra):
    return api.post(
        "/v1/webhook_endpoints",
        {"url": url, "enabled_events": list(events), **extra},
        format="json",
    )


def test_an_endpoint_is_created_with_its_secret_shown_once_and_stored_sealed(api):
    made = create(api, events=["payment.captured", "refund.succeeded"], description="shop")
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["id"].startswith("we_")
    assert body["secret"].startswith("whsec_")
    assert (body["object"], body["livemode"], body["status"]) == (
        "webhook_endpoint",
        False,
        "enabled",
    )
    assert body["enabled_events"] == ["payment.captured", "refund.succeeded"]
    again = api.get(f"/v1/webhook_endpoints/{body['id']}").json()
    assert "secret" not in again
    assert again == {key: value for key, value in body.items() if key != "secret"}
    listed = api.get("/v1/webhook_endpoints").json()
    assert [item["id"] for item in listed["data"]] == [body["id"]]
    assert all("secret" not in item for item in listed["data"])
    # in the database: sealed, never the secret itself
    row = WebhookEndpoint.objects.get()
    assert body["secret"].encode() not in bytes(row.secret_sealed)
    assert body["secret"][6:].encode() not in bytes(row.secret_sealed)


def test_an_endpoint_is_updated_disabled_and_deleted(api):
    endpoint = create(api).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    updated = api.post(
        path,
        {"enabled_events": ["payment.created"], "disabled": True},
        format="json",
        HTTP_IF_MATCH=f'"{endpoint["version"]}"',
    )
    assert updated.status_code == 200, updated.content
    assert (updated.json()["status"], updated.json()["enabled_events"]) == (
        "disabled",
        ["payment.created"],
    )
    assert updated.json()["disabled_reason"] == "disabled by the merchant"
    stale = api.post(path, {"disabled": False}, format="json", HTTP_IF_MATCH='"1"')
    assert_error(stale, 409, "concurrent_update")
    enabled = api.post(path, {"disabled": False}, format="json").json()
    assert (enabled["status"], enabled["disabled_reason"]) == ("enabled", None)
    deleted = api.delete(path)
    assert deleted.json() == {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
    assert_error(api.get(path), 404, "resource_missing", "id")
    assert api.get("/v1/webhook_endpoints").json()["data"] == []


def test_another_merchants_or_modes_endpoint_is_not_found(api, other_api, live_api):
    endpoint = create(api).json()
    for client in (other_api, live_api):
        assert_error(client.get(f"/v1/webhook_endpoints/{endpoint['id']}"), 404, "resource_missing")
        assert_error(
            client.post(
                f"/v1/webhook_endpoints/{endpoint['id']}", {"disabled": True}, format="json"
            ),
            404,
            "resource_missing",
        )
        assert client.get("/v1/webhook_endpoints").json()["data"] == []
    assert_error(api.get("/v1/webhook_endpoints/4242424242424242"), 404, "resource_missing")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": HOOK, "enabled_events": []}, "enabled_events"),
        ({"url": HOOK, "enabled_events": ["payment.nope"]}, "enabled_events"),
        ({"url": HOOK, "enabled_events": ["nope.*"]}, "enabled_events"),
        ({"url": HOOK, "enabled_events": ["pay*ment"]}, "enabled_events"),
        ({"url": HOOK, "enabled_events": "*"}, "enabled_events"),
        ({"url": "ftp://example.com/x", "enabled_events": ["*"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x", "enabled_events": ["*"]}, "url"),
        ({"url": "not a url", "enabled_events": ["*"]}, "url"),
        ({"url": HOOK, "enabled_events": ["*"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_endpoints_are_refused_naming_the_parameter(api, body, param):
    refused = api.post("/v1/webhook_endpoints", body, format="json")
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",  # live mode: https only
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://0.0.0.0/hooks",
        "https://100.100.100.200/latest/meta-data",  # shared address space (a cloud's metadata)
        "https://[2002:7f00:1::]/hooks",  # 6to4 of 127.0.0.1
        "https://[2002:a9fe:a9fe::]/hooks",  # 6to4 of 169.254.169.254
        "https://[fec0::1]/hooks",  # site-local
    ],
)
def test_live_mode_refuses_plain_http_and_private_loopback_and_link_local_addresses(live_api, url):
    error = assert_error(create(live_api, url=url), 400, "url_not_allowed", "url")
    assert url not in error["message"]
    assert not WebhookEndpoint.objects.exists()


def test_test_mode_reaches_this_machine_only_when_the_setting_says_so(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST = False
    assert_error(create(api, url="http://127.0.0.1:8000/hooks"), 400, "url_not_allowed", "url")
    settings.WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST = True
    assert create(api, url="http://127.0.0.1:8000/hooks").status_code == 201


def test_rolling_the_secret_answers_a_new_one_and_keeps_the_old_for_the_grace_period(api):
    endpoint = create(api).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret"
    rolled = api.post(path, {"expires_in": 3600}, format="json").json()
    assert rolled["secret"].startswith("whsec_")
    assert rolled["secret"] != endpoint["secret"]
    row = WebhookEndpoint.objects.get()
    assert row.previous_secret_sealed
    assert row.previous_secret_expires_at
    at_once = api.post(path, {"expires_in": 0}, format="json").json()
    assert at_once["secret"] not in (rolled["secret"], endpoint["secret"])
    row.refresh_from_db()
    assert row.previous_secret_sealed is None
    assert_error(
        api.post(path, {"expires_in": 10**9}, format="json"), 400, "max_value", "expires_in"
    )


def test_an_endpoint_holding_a_card_number_is_refused(api):
    refused = create(api, url="http://127.0.0.1/hooks?card=4242424242424242")
    assert_error(refused, 400, "card_number_not_allowed", "url")
    assert_error(
        create(api, description="card 4242 4242 4242 4242"), 400, "card_number_not_allowed"
    )
    assert not WebhookEndpoint.objects.exists()


def test_an_unknown_query_parameter_cut_to_a_card_number_is_not_repeated(api):
    name = "x" * 84 + "4242424242424242" + "0000"
    refused = api.get("/v1/payments", {name: "1"})
    error = assert_error(refused, 400, "parameter_unknown")
    assert error["param"] is None
    assert "4242" not in refused.content.decode()


def test_every_change_of_an_endpoint_is_audited_and_no_entry_holds_a_secret(api):
    from audit.models import AuditEntry

    made = create(api).json()
    path = f"/v1/webhook_endpoints/{made['id']}"
    api.post(path, {"url": "http://127.0.0.1:10/elsewhere"}, format="json")
    rolled = api.post(f"{path}/roll_secret", {}, format="json").json()
    api.delete(path)
    entries = list(AuditEntry.objects.filter(object_type="payflow.webhookendpoint").order_by("id"))
    assert [entry.event_type for entry in entries] == [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.secret_rolled",
        "webhook_endpoint.updated",
    ]
    assert entries[0].actor_type != ""
    bodies = b"".join(bytes(entry.body) for entry in entries)
    assert b"http://127.0.0.1:10/elsewhere" in bodies
    for secret in (made["secret"], rolled["secret"]):
        assert secret.encode() not in bodies
        assert secret[6:].encode() not in bodies
