"""Test mode and live mode are separate worlds (issue: "sk_test_ / sk_live_ is only a label").

Reproduced before the fix: a merchant's live key saw the balance its test payments made,
listed its test payments, and ``POST /v1/payouts`` with the live key paid out that test
money (201). On MariaDB, as every API test: balances and scopes are SQL.
"""

from __future__ import annotations

import datetime

import pytest
from django.core import checks
from django.utils import timezone

from ledger import ids
from ledger.models import (
    Account,
    AccountKind,
    AcquirerCommand,
    CardToken,
    JournalEntry,
    Transaction,
)
from ledger.selectors import ledger_check_invariants
from ledger.services.api_keys import api_key_create
from ledger.services.journal import UnbalancedEntry, journal_post, platform_account
from ledger.services.settlement import settlement_run
from ledger.simulator import SimulatedAcquirer
from outbox.models import OutboxEvent
from payflow.models import IdempotencyRecord
from tests.payflow.api.conftest import CARD, RecordingClient, assert_error, create_payment

SIMULATOR = "ledger.simulator.SimulatedAcquirer"


class RecordingLiveAcquirer(SimulatedAcquirer):
    """The simulator standing in for a live acquirer (none can run here), remembering the
    references it was asked about so a test can see which mode's acquirer got a call."""

    calls: list[tuple[str, str]] = []

    def authorize(self, request):
        self.calls.append(("authorize", request.reference))
        return super().authorize(request)

    def capture(self, request):
        self.calls.append(("capture", request.authorization))
        return super().capture(request)

    def refund(self, request):
        self.calls.append(("refund", request.authorization))
        return super().refund(request)


@pytest.fixture
def live_acquirer(settings):
    settings.LIVE_ACQUIRER_CLASS = f"{__name__}.RecordingLiveAcquirer"
    RecordingLiveAcquirer.calls = []
    return RecordingLiveAcquirer.calls


def _key_client(request, merchant, mode) -> RecordingClient:
    client = RecordingClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(merchant=merchant, mode=mode).secret}"
    )
    request.node.recording_clients.append(client)
    return client


@pytest.fixture
def test_api(request, merchant):
    return _key_client(request, merchant, "test")


@pytest.fixture
def live_api(request, merchant):
    return _key_client(request, merchant, "live")


def settle():
    settlement_run(now=timezone.now() + datetime.timedelta(days=3))


def available(client, currency="EUR"):
    balance = client.get("/v1/balance").json()
    return {row["currency"]: row["amount"] for row in balance["available"]}.get(currency, 0)


def test_a_live_key_sees_no_test_money_and_cannot_pay_it_out(test_api, live_api):
    # The reproduction: test money, then a live key of the same merchant.
    assert create_payment(test_api, amount=500_000).status_code == 201
    settle()
    assert available(test_api) == 500_000
    assert live_api.get("/v1/balance").json() == {
        "object": "balance",
        "livemode": True,
        "available": [],
        "pending": [],
        "receivable": [],
    }
    assert live_api.get("/v1/payments").json()["data"] == []
    refused = live_api.post("/v1/payouts", {"amount": 500_000, "currency": "EUR"}, format="json")
    assert_error(refused, 422, "insufficient_balance")
    assert not Transaction.objects.filter(type="payout").exists()
    # the test key pays out its own test money
    payout = test_api.post("/v1/payouts", {"amount": 500_000, "currency": "EUR"}, format="json")
    assert payout.status_code == 201, payout.content
    assert payout.json()["livemode"] is False


def test_without_a_live_acquirer_a_live_payment_is_refused_and_leaves_nothing(live_api):
    before = {
        model: model.objects.count()
        for model in (Transaction, CardToken, JournalEntry, OutboxEvent, AcquirerCommand)
    }
    response = create_payment(live_api, amount=1_000)
    error = assert_error(response, 403, "livemode_unavailable")
    assert error["type"] == "permission_error"
    assert "no live acquirer" in error["message"]
    assert {model: model.objects.count() for model in before} == before


def test_each_key_sees_only_its_own_mode(test_api, live_api, live_acquirer):
    test_token = test_api.post("/v1/tokens", {"card": CARD}, format="json").json()
    live_token = live_api.post("/v1/tokens", {"card": CARD}, format="json").json()
    assert (test_token["livemode"], live_token["livemode"]) == (False, True)
    test_paid = create_payment(test_api, amount=1_000).json()
    live_paid = create_payment(live_api, amount=7_000).json()
    live_held = create_payment(live_api, amount=3_000, capture=False).json()
    test_refund = test_api.post(
        f"/v1/payments/{test_paid['id']}/refunds", {"amount": 100}, format="json"
    ).json()
    assert (test_paid["livemode"], live_paid["livemode"], test_refund["livemode"]) == (
        False,
        True,
        False,
    )
    for client, own, foreign in (
        (test_api, test_paid, live_paid),
        (live_api, live_paid, test_paid),
    ):
        listed = {p["id"] for p in client.get("/v1/payments").json()["data"]}
        assert own["id"] in listed
        assert foreign["id"] not in listed
        assert_error(client.get(f"/v1/payments/{foreign['id']}"), 404, "resource_missing")
        for event in client.get("/v1/events").json()["data"]:
            assert event["livemode"] is own["livemode"]
            assert event["data"]["object"]["livemode"] is own["livemode"]
    # a test key can neither read nor move a live object, nor use a live token, and back
    assert_error(test_api.get(f"/v1/tokens/{live_token['id']}"), 404, "resource_missing")
    for path, body in (
        (f"/v1/payments/{live_held['id']}/capture", {}),
        (f"/v1/payments/{live_held['id']}/cancel", {}),
        (f"/v1/payments/{live_paid['id']}/refunds", {"amount": 1}),
        ("/v1/payments", {"amount": 100, "currency": "EUR", "token": live_token["id"]}),
    ):
        assert_error(test_api.post(path, body, format="json"), 404, "resource_missing")
    assert_error(
        live_api.post(
            "/v1/payments",
            {"amount": 100, "currency": "EUR", "token": test_token["id"]},
            format="json",
        ),
        404,
        "resource_missing",
    )
    assert_error(live_api.get(f"/v1/refunds/{test_refund['id']}"), 404, "resource_missing")
    assert live_api.get("/v1/refunds").json()["data"] == []
    # balances per mode
    pending = {
        name: client.get("/v1/balance").json()["pending"]
        for name, client in (("test", test_api), ("live", live_api))
    }
    assert pending == {
        "test": [{"amount": 900, "currency": "EUR"}],
        "live": [{"amount": 7_000, "currency": "EUR"}],
    }
    # the live acquirer got the live payments' calls and none of the test ones
    live_ids = {str(ids.decode("payment", p["id"])) for p in (live_paid, live_held)}
    assert {reference for _call, reference in live_acquirer} == live_ids
    assert ledger_check_invariants().ok


def test_a_live_payout_spends_live_money_only(test_api, live_api, live_acquirer):
    create_payment(test_api, amount=9_000)
    create_payment(live_api, amount=2_000)
    settle()
    assert (available(test_api), available(live_api)) == (9_000, 2_000)
    assert_error(
        live_api.post("/v1/payouts", {"amount": 2_001, "currency": "EUR"}, format="json"),
        422,
        "insufficient_balance",
    )
    paid = live_api.post("/v1/payouts", {"amount": 2_000, "currency": "EUR"}, format="json")
    assert paid.status_code == 201, paid.content
    assert paid.json()["livemode"] is True
    assert (available(test_api), available(live_api)) == (9_000, 0)
    # test payouts are not listed for the live key, nor live ones for the test key
    assert [p["id"] for p in live_api.get("/v1/payouts").json()["data"]] == [paid.json()["id"]]
    assert test_api.get("/v1/payouts").json()["data"] == []
    # every account, platform ones included, is one mode's: the live payout cleared
    # through live payout clearing; test mode paid nothing out
    platform = {
        (livemode, kind)
        for livemode, kind in Account.objects.filter(owner="platform").values_list(
            "livemode", "kind"
        )
    }
    assert platform == {
        (False, AccountKind.ACQUIRER_CLEARING),
        (True, AccountKind.ACQUIRER_CLEARING),
        (True, AccountKind.PAYOUT_CLEARING),
    }
    settle()
    assert ledger_check_invariants().ok


def test_one_idempotency_key_in_test_and_in_live_makes_two_payments(
    test_api, live_api, live_acquirer
):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-1"}
    body = {"amount": 1_200, "currency": "EUR", "card": CARD}
    test_paid = test_api.post("/v1/payments", body, format="json", **headers)
    live_paid = live_api.post("/v1/payments", body, format="json", **headers)
    assert (test_paid.status_code, live_paid.status_code) == (201, 201)
    assert test_paid.json()["id"] != live_paid.json()["id"]
    assert (test_paid.json()["livemode"], live_paid.json()["livemode"]) == (False, True)
    # and each replays its own
    again = live_api.post("/v1/payments", body, format="json", **headers)
    assert again.json()["id"] == live_paid.json()["id"]
    assert sorted(IdempotencyRecord.objects.values_list("livemode", flat=True)) == [False, True]


@pytest.mark.django_db(transaction=True)
def test_a_journal_entry_cannot_mix_test_and_live_accounts():
    from payflow.platform import db

    @db.atomic
    def post_across_modes():
        journal_post(
            kind="adjustment",
            lines=[
                (platform_account(AccountKind.ACQUIRER_CLEARING, "EUR", livemode=False), 5),
                (platform_account(AccountKind.SETTLEMENT_BANK, "EUR", livemode=True), -5),
            ],
        )

    with pytest.raises(UnbalancedEntry, match="cannot mix test-mode and live-mode"):
        post_across_modes()
    assert not JournalEntry.objects.exists()


def test_the_deploy_check_refuses_the_simulator_as_live_acquirer(settings):
    settings.LIVE_ACQUIRER_CLASS = SIMULATOR
    errors = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
    assert "payflow.E002" in {error.id for error in errors}
    settings.LIVE_ACQUIRER_CLASS = ""
    errors = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
    assert "payflow.E002" not in {error.id for error in errors}


def test_the_acquirer_interface_answers_the_mode_it_is_asked_for(settings):
    from ledger import acquirer

    settings.LIVE_ACQUIRER_CLASS = ""
    assert acquirer.acquirer_configured(False)
    assert not acquirer.acquirer_configured(True)
    with pytest.raises(acquirer.AcquirerNotConfigured):
        acquirer.inquire("01a2-nothing", livemode=True)
    assert isinstance(acquirer.get_acquirer(False), SimulatedAcquirer)


def test_the_invariant_check_reports_anything_that_crossed_modes(test_api):
    from django.db import connection

    paid = create_payment(test_api, amount=2_000).json()
    refund = test_api.post(
        f"/v1/payments/{paid['id']}/refunds", {"amount": 100}, format="json"
    ).json()
    assert ledger_check_invariants().ok
    refund_pk = ids.decode("refund", refund["id"])
    with connection.cursor() as cursor:  # what no service can do: rows changed by hand
        cursor.execute("UPDATE ledger_transaction SET livemode = 1 WHERE id = %s", [refund_pk.hex])
        cursor.execute("UPDATE ledger_account SET livemode = 1 WHERE kind = 'merchant_pending'")
    problems = ledger_check_invariants().problems
    assert f"transaction {refund_pk} is not of its payment's mode" in problems
    assert any("posts to an account of another mode" in problem for problem in problems)
