"""Fixtures for the real parts: MariaDB, a 3-node Galera cluster, the Kafka-protocol broker,
a real Celery worker on Redis and headless Chromium. Loaded by ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from payflow import config
from tests.infra.celery_worker import CeleryWorker
from tests.infra.galera import GaleraCluster, GaleraUnavailable, missing_requirements
from tests.infra.gunicorn import database_url
from tests.infra.kafka import KafkaBroker
from tests.infra.processes import ManageProcess
from tests.missing import missing_part

GALERA_DATABASE = "payflow_galera_test"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def infra_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="payflow-infra-"))
    path.chmod(0o755)  # mariadbd runs as the mysql user and must reach its data below
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- Galera ---------------------------------------------------------------------------


def register_database_alias(alias: str, url: str) -> None:
    """Make ``connections[alias]`` a MariaDB connection to ``url`` for the rest of the run."""
    # wsrep_sync_wait=1: the documented Galera setting (README), so a node reads what was
    # committed through another node before it answers (read-your-writes across nodes).
    database = config.database_settings(url, conn_max_age=0, wsrep_sync_wait=1)
    configured = connections.configure_settings(
        {"default": settings.DATABASES["default"], alias: database}
    )
    connections.settings[alias] = configured[alias]


@pytest.fixture(scope="session")
def galera_cluster(infra_dir: Path, django_db_setup, django_db_blocker) -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster on loopback with the PayFlow schema migrated.

    After the test database is set up (``django_db_setup``): the migrations' signals read
    the default connection, which must then name a database that exists.

    Django aliases ``galera1``, ``galera2`` and ``galera3`` point at the three nodes.
    """
    missing = missing_requirements()
    if missing:
        missing_part(f"Galera packages not installed: {', '.join(missing)}")
    cluster = GaleraCluster(infra_dir / "galera")
    try:
        cluster.start()
    except GaleraUnavailable as exc:  # pragma: no cover - checked above
        missing_part(str(exc))
    try:
        connection = cluster.nodes[0].connect()
        connection.cursor().execute(
            f"CREATE DATABASE {GALERA_DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        connection.close()
        for node in cluster.nodes:
            register_database_alias(f"galera{node.index}", node.url(GALERA_DATABASE))
        with django_db_blocker.unblock():
            call_command("migrate", database="galera1", verbosity=0)
        yield cluster
    finally:
        for node in cluster.nodes:
            with contextlib.suppress(Exception):
                connections[f"galera{node.index}"].close()
        # PAYFLOW_KEEP_GALERA=/some/dir keeps the nodes' data and logs for a post-mortem.
        keep = os.environ.get("PAYFLOW_KEEP_GALERA")
        if keep:
            shutil.copytree(
                cluster.workdir,
                keep,
                dirs_exist_ok=True,
                ignore_dangling_symlinks=True,
                ignore=shutil.ignore_patterns("ib*", "*.ibd", "aria*", "mysql.sock"),
            )
        cluster.stop()


@pytest.fixture
def galera(galera_cluster: GaleraCluster, django_db_blocker) -> Iterator[GaleraCluster]:
    """The Galera cluster, with database access allowed for the length of one test."""
    with django_db_blocker.unblock():
        yield galera_cluster
        for node in galera_cluster.nodes:
            connections[f"galera{node.index}"].close()


@contextlib.contextmanager
def default_database_is(alias: str) -> Iterator[None]:
    """In this thread, make the ``default`` connection one to ``alias`` (e.g. a Galera node).

    Services use the default alias; a test thread that writes "through node 2" swaps its
    thread-local default connection for one made from node 2's settings.
    """
    original = connections["default"]
    connections["default"] = connections.create_connection(alias)
    try:
        yield
    finally:
        connections["default"].close()
        connections["default"] = original


# --- Kafka ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker(infra_dir: Path) -> Iterator[KafkaBroker]:
    """The Kafka-protocol broker (librdkafka's mock cluster) in its own process."""
    broker = KafkaBroker(infra_dir / "kafka").start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_settings(kafka_broker: KafkaBroker, settings) -> KafkaBroker:
    """Point PayFlow's Kafka clients at the test broker."""
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap
    return kafka_broker


# --- Celery ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def celery_worker_process(
    infra_dir: Path, django_db_setup, kafka_broker: KafkaBroker
) -> Iterator[CeleryWorker]:
    """A real ``celery worker`` process on Redis, using the test database and broker."""
    from payflow.celery import app

    database = settings.DATABASES["default"]
    database_url = (
        f"mysql://{database['USER']}:{database['PASSWORD']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 3306}/{database['NAME']}"
    )
    app.control.purge()
    worker = CeleryWorker(
        app,
        infra_dir / "celery",
        env={
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(settings.BASE_DIR),
        },
    ).start()
    yield worker
    worker.stop()


@pytest.fixture
def relay_process(infra_dir: Path, django_db_setup, kafka_broker: KafkaBroker):
    """A real ``manage.py outbox_relay`` process (the one way events leave the outbox),
    on the test database and broker, for one test (a relay left running would publish
    what the outbox's failure tests keep from the broker)."""
    relay = ManageProcess(
        infra_dir / f"relay-{uuid.uuid4().hex[:6]}",
        ["outbox_relay"],
        {"DATABASE_URL": database_url(), "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap},
    ).start()
    yield relay
    relay.stop()


# --- browser --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        missing_part("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium) -> Iterator[object]:
    """A fresh page; the test fails if any page it opened broke the Content-Security-Policy
    (Chromium reports each refused script, style or request on the console)."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert violations == [], violations


# --- PAN checks -----------------------------------------------------------------------


@pytest.fixture
def unredacted_logs(monkeypatch):
    """Take the PAN-redaction backstop off the root handlers for one test.

    The filter masks the shared LogRecord, so with it on, pytest's capture handler would
    only ever see masked records and a PAN logged by the code would go unnoticed.
    """
    import logging

    from payflow.logging import PanRedactingFilter

    for handler in logging.getLogger().handlers:
        kept = [f for f in handler.filters if not isinstance(f, PanRedactingFilter)]
        monkeypatch.setattr(handler, "filters", kept)


# --- audit ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with an empty cache: no login-failure count (payflow.login_guard)
    or API throttle counter carried over from another test."""
    from django.core.cache import cache

    from payflow.platform import caches

    cache.clear()
    # and the process caches of the request path: the rows they name were flushed
    caches.clear_all()


@pytest.fixture(autouse=True)
def acting_as_the_test_suite():
    """Every change needs an actor (audit). Tests act as a named system actor; tests of the
    refusal replace the context with an empty one."""
    from payflow.platform import context

    with context.replaced(context.AuditContext(**context.system_actor("tests"))):
        yield


@pytest.fixture(scope="session", autouse=True)
def truncate_audit_tables_when_flushing():
    """Transactional tests end with a flush (DELETE FROM every table), which the audit
    table's DELETE trigger rightly refuses. The test harness, as root, empties the audit
    tables with TRUNCATE (a DDL privilege the application's user does not have, and which
    fires no trigger). Production code has no such path."""
    from django.db.backends.mysql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush
    audit_tables = {
        "audit_auditentry",
        "audit_logleaf",
        "audit_lognode",
        "audit_checkpoint",
        "audit_cosignature",
        "audit_retentionpurge",
    }

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        audited = [table for table in tables if table in audit_tables]
        others = [table for table in tables if table not in audit_tables]
        statements = original(
            self, style, others, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        truncates = [f"TRUNCATE {self.quote_name(table)};" for table in audited]
        if not truncates:
            return statements
        # keep FOREIGN_KEY_CHECKS=0 … =1 around everything
        return [*statements[:1], *truncates, *statements[1:]] if statements else truncates

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original
