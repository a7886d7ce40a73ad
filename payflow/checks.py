"""System checks of PayFlow's own settings (``manage.py check``, ``check --deploy``)."""

from __future__ import annotations

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
