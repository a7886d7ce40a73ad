"""The operators' dashboard: payments, declines and the outbox's lag over the last 24 hours,
hour by hour, as small charts.

Reproduced before: the admin had no picture of volume or declines at all."""

import datetime
import re

import pytest
from django.utils import timezone

from ledger.services.merchants import merchant_create
from outbox.models import EventStatus, OutboxEvent
from payflow.admin.dashboard import BAR_HEIGHT, HOURS, dashboard
from tests.ledger.conftest import pay

DECLINED = "4000000000000002"


@pytest.fixture
def traffic(db):
    shop = merchant_create(name="Boulangerie Martin")
    for amount in (1000, 2000, 3000):
        pay(shop, amount=amount)
    pay(shop, amount=500, number=DECLINED)
    # an event published 3 s after it was written, in this hour
    event = OutboxEvent.objects.order_by("id").first()
    OutboxEvent.objects.filter(pk=event.pk).update(
        status=EventStatus.PUBLISHED, published_at=event.created_at + datetime.timedelta(seconds=3)
    )
    return shop


def test_the_last_24_hours_by_hour(traffic):
    board = dashboard()
    payments, declines, lag = board.charts
    assert [len(chart.bars) for chart in board.charts] == [HOURS] * 3
    now = payments.bars[-1]  # the current hour is the last bar
    assert now.hour <= timezone.now() < now.hour + datetime.timedelta(hours=1)
    # (the payments may straddle an hour's end: the last two bars hold them)
    assert payments.bars[-1].value + payments.bars[-2].value == 4
    assert max(bar.height for bar in payments.bars) == BAR_HEIGHT
    assert payments.summary == "4 payments in 24 h"
    assert declines.summary == "25.0 % declined in 24 h"
    assert max(bar.value for bar in lag.bars) == pytest.approx(3.0, abs=0.01)
    assert board.volume_by_currency == [("EUR", "60.00", 4)]  # captured; the decline is not


def test_older_payments_are_left_out(traffic):
    later = timezone.now() + datetime.timedelta(hours=30)
    board = dashboard(now=later)
    assert sum(bar.value for bar in board.charts[0].bars) == 0
    assert board.charts[1].summary == "no payments"


def test_operators_and_auditors_see_the_page_others_do_not(
    client, operator, auditor, django_user_model, traffic
):
    client.force_login(operator)
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/" id="dashboard-link"' in index
    page = client.get("/admin/dashboard/").content.decode()
    assert page.count('<rect class="bar"') == 3 * HOURS
    assert re.search(r"<title>\d\d:00 UTC: [1-4] payments</title>", page)
    assert "25.0 % declined in 24 h" in page
    assert "<td>60.00 EUR</td>" in page
    client.force_login(auditor)
    assert client.get("/admin/dashboard/").status_code == 200
    nobody = django_user_model.objects.create_user("staff", password="x-pass-1234", is_staff=True)
    client.force_login(nobody)
    assert client.get("/admin/dashboard/").status_code == 403
    client.logout()
    assert client.get("/admin/dashboard/").status_code == 302
