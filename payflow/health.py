"""Liveness and readiness probes.

``/healthz``: the process answers (no dependency is touched).
``/readyz``: the database answers (and, on Galera, this node is ``Synced`` with
``wsrep_ready=ON``) and Kafka returns metadata. A database problem makes the instance
not ready (503). Kafka being unreachable is reported as ``degraded`` with 200: payments
keep working because events wait in the outbox, so taking the web tier out of the load
balancer would turn a delayed-events incident into an outage. The same holds for the
other degraded dependencies it reports: the outbox (dead events, or a pending event older
than ``READYZ_OUTBOX_LAG_SECONDS``: the relay process is behind or down) and the Celery
broker (not reachable: scheduled and operator-started tasks wait until it is back).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.sequencer import sequencer_lag_seconds
from outbox.services import outbox_backlog
from payflow.celery import app
from payflow.platform import kafka

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _galera_state(cursor: Any) -> dict[str, Any] | None:
    cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
    row = cursor.fetchone()
    if not row or row[1] != "ON":
        return None
    cursor.execute(
        "SHOW GLOBAL STATUS WHERE Variable_name IN "
        "('wsrep_local_state_comment', 'wsrep_ready', 'wsrep_cluster_size', "
        "'wsrep_cluster_status')"
    )
    return dict(cursor.fetchall())


def database_check() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
        result: dict[str, Any] = {"ok": True, "vendor": connection.vendor}
        if connection.vendor != "mysql":
            return result
        galera = _galera_state(cursor)
    if galera is not None:
        synced = galera.get("wsrep_local_state_comment") == "Synced"
        ready = galera.get("wsrep_ready") == "ON"
        result.update(
            ok=synced and ready,
            galera={
                "state": galera.get("wsrep_local_state_comment"),
                "ready": galera.get("wsrep_ready"),
                "cluster_size": int(galera.get("wsrep_cluster_size") or 0),
                "cluster_status": galera.get("wsrep_cluster_status"),
            },
        )
    return result


def _run_check(name: str, check: Any) -> dict[str, Any]:
    try:
        return check()
    except Exception as exc:  # a probe reports every failure, it never raises
        logger.warning("readiness check %s failed: %s", name, exc)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def kafka_check() -> dict[str, Any]:
    return {"ok": True, **kafka.cluster_metadata_check()}


def outbox_check() -> dict[str, Any]:
    """Degraded when an event is dead (an operator must requeue it) or the relay lags."""
    backlog = outbox_backlog(count_published=False)
    lag = backlog.oldest_pending_age_seconds or 0.0
    return {
        "ok": backlog.dead == 0 and lag <= settings.READYZ_OUTBOX_LAG_SECONDS,
        "pending": backlog.pending,
        "dead": backlog.dead,
        "oldest_pending_age_seconds": round(lag, 3),
    }


def audit_sequencer_check() -> dict[str, Any]:
    """Degraded when audit entries wait longer than ``AUDIT_SEQUENCER_MAX_LAG_SECONDS`` to
    be sealed into the log (the sequencer is down or behind)."""
    lag = sequencer_lag_seconds()
    return {
        "ok": lag <= settings.AUDIT_SEQUENCER_MAX_LAG_SECONDS,
        "unsealed_age_seconds": round(lag, 3),
    }


def broker_check() -> dict[str, Any]:
    """The Celery broker accepts a connection within ``READYZ_BROKER_TIMEOUT`` seconds."""
    # The URL from the settings, as the app read it at start (and as a test can change it).
    with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        connection.ensure_connection(max_retries=1, timeout=settings.READYZ_BROKER_TIMEOUT)
        transport = connection.transport_cls
    return {"ok": True, "transport": str(transport)}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _run_check("database", database_check),
        "kafka": _run_check("kafka", kafka_check),
        "outbox": _run_check("outbox", outbox_check),
        "celery_broker": _run_check("celery_broker", broker_check),
        "audit_sequencer": _run_check("audit_sequencer", audit_sequencer_check),
    }
    if not checks["database"]["ok"]:
        status, code = "unavailable", 503
    elif not all(check["ok"] for check in checks.values()):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "checks": checks}, status=code)
