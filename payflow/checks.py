"""System checks of PayFlow's own settings (``manage.py check``, ``check --deploy``)."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def fault_injection_is_off(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """A deployment must not let a request header kill its processes
    (``payflow.platform.faults``)."""
    if not settings.FAULT_INJECTION:
        return []
    return [
        checks.Error(
            "FAULT_INJECTION is on: any request with an X-PayFlow-Fault header can kill the "
            "process serving it.",
            hint="Unset FAULT_INJECTION; it exists for the crash tests only.",
            id="payflow.E001",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def live_acquirer_is_real(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Live money must never reach the simulator: it approves any card, moving no money."""
    if settings.LIVE_ACQUIRER_CLASS != "ledger.simulator.SimulatedAcquirer":
        return []
    return [
        checks.Error(
            "LIVE_ACQUIRER_CLASS is the simulator: live payments would be approved without "
            "any money moving.",
            hint="Name a real acquirer gateway, or leave LIVE_ACQUIRER_CLASS empty "
            "(live payments are then refused).",
            id="payflow.E002",
        )
    ]


@checks.register()
def events_outlive_webhook_retries(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """A webhook's body is rendered from its outbox row at each attempt: the row must be
    kept at least as long as the delivery is retried (and a day more for the backlog)."""
    kept = datetime.timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    needed = settings.WEBHOOK_RETRY_SPAN + datetime.timedelta(days=1)
    if kept >= needed:
        return []
    return [
        checks.Warning(
            f"OUTBOX_RETENTION_HOURS ({settings.OUTBOX_RETENTION_HOURS}) is shorter than "
            "WEBHOOK_RETRY_SPAN plus a day: late webhook retries would find their event "
            "purged.",
            hint=f"Keep events at least {int(needed.total_seconds() // 3600)} hours.",
            id="payflow.W003",
        )
    ]
