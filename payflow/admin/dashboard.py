"""The operators' dashboard (``/admin/dashboard/``): the last 24 hours, hour by hour —
payment volume, the decline rate, and the outbox's lag — as small charts, beside the
outbox backlog now.

Grouped queries on index ranges only (transactions by status and time, outbox events by
status and time), so the page stays cheap on a large ledger.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from ledger.currencies import to_major
from ledger.models import Transaction, TransactionStatus, TransactionType
from outbox.models import EventStatus, OutboxEvent
from outbox.services import Backlog, outbox_backlog

HOURS = 24
BAR_WIDTH, BAR_GAP, BAR_HEIGHT = 12, 2, 60
CHART_WIDTH = HOURS * (BAR_WIDTH + BAR_GAP)


@dataclass(frozen=True)
class Bar:
    hour: datetime.datetime
    value: float
    label: str  # what the bar's tooltip says
    x: int = 0  # the bar's place in the chart (SVG units)
    height: int = 0  # its height (SVG units; the tallest bar is BAR_HEIGHT)

    @property
    def y(self) -> int:
        return BAR_HEIGHT - self.height


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    summary: str


@dataclass(frozen=True)
class Dashboard:
    since: datetime.datetime
    charts: list[Chart]
    backlog: Backlog
    volume_by_currency: list[tuple[str, str, int]]  # currency, captured (major), payments


def dashboard(now: datetime.datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    since = end - datetime.timedelta(hours=HOURS)
    hours = [since + datetime.timedelta(hours=n) for n in range(HOURS)]
    payments = Transaction.objects.filter(
        status__in=TransactionStatus.values,  # the (status, initiated_at) index, per status
        initiated_at__gte=since,
        type=TransactionType.PAYMENT,
    )
    per_hour = {
        row["hour"]: row
        for row in payments.annotate(hour=TruncHour("initiated_at"))
        .values("hour")
        .annotate(
            n=Count("id"),
            declined=Count("id", filter=Q(status=TransactionStatus.FAILED) & ~Q(decline_code="")),
        )
    }
    lag = ExpressionWrapper(F("published_at") - F("created_at"), output_field=DurationField())
    published = {
        row["hour"]: row
        for row in OutboxEvent.objects.filter(status=EventStatus.PUBLISHED, created_at__gte=since)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(average=Avg(lag), worst=Max(lag), n=Count("id"))
    }
    volume = [
        (currency, to_major(int(total or 0), currency), count)
        for currency, total, count in payments.values_list("currency")
        .annotate(total=Sum("captured_amount"), count=Count("id"))
        .order_by("currency")
        .values_list("currency", "total", "count")
    ]

    def count(hour: datetime.datetime) -> int:
        return int(per_hour.get(hour, {}).get("n", 0))

    def rate(hour: datetime.datetime) -> float:
        row = per_hour.get(hour)
        return 100.0 * row["declined"] / row["n"] if row and row["n"] else 0.0

    def seconds(hour: datetime.datetime, key: str) -> float:
        value = published.get(hour, {}).get(key)
        return value.total_seconds() if value is not None else 0.0

    total = sum(count(hour) for hour in hours)
    declined = sum(int(per_hour.get(hour, {}).get("declined", 0)) for hour in hours)
    worst = max((seconds(hour, "worst") for hour in hours), default=0.0)
    charts = [
        _chart(
            "Payments per hour",
            [(hour, count(hour), f"{count(hour)} payments") for hour in hours],
            f"{total} payments in 24 h",
        ),
        _chart(
            "Decline rate per hour",
            [(hour, rate(hour), f"{rate(hour):.1f} % declined") for hour in hours],
            f"{100.0 * declined / total:.1f} % declined in 24 h" if total else "no payments",
        ),
        _chart(
            "Outbox lag per hour (worst)",
            [
                (
                    hour,
                    seconds(hour, "worst"),
                    f"worst {seconds(hour, 'worst'):.2f} s, average "
                    f"{seconds(hour, 'average'):.2f} s",
                )
                for hour in hours
            ],
            f"worst {worst:.2f} s in 24 h",
        ),
    ]
    return Dashboard(since, charts, outbox_backlog(count_published=False), volume)


def _chart(title: str, values: list[tuple[datetime.datetime, float, str]], summary: str) -> Chart:
    top = max((value for _, value, _ in values), default=0.0) or 1.0
    bars = [
        Bar(
            hour,
            value,
            f"{hour:%H}:00 UTC: {label}",
            x=position * (BAR_WIDTH + BAR_GAP),
            height=max(1, round(BAR_HEIGHT * value / top)) if value else 0,
        )
        for position, (hour, value, label) in enumerate(values)
    ]
    return Chart(title, bars, summary)
