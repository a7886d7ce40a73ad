"""PayFlow settings. Everything comes from the environment through one django-environ ``env``.

Development reads ``.env`` at the repository root (``PAYFLOW_ENV_FILE`` points elsewhere, or
is set empty to read no file). See README.md for the table of variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab

from payflow import config

BASE_DIR = Path(__file__).resolve().parent.parent

# Any variable may come from a file instead: NAME_FILE=/run/secrets/name (docker/README.md).
env = config.settings_env()
ENV_FILE = env.str("PAYFLOW_ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    # Values already in the process environment win over the file.
    environ.Env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("PAYFLOW_VAR_DIR", default=str(BASE_DIR / "var")))

_secrets = config.load_secrets(env, debug=DEBUG)
SECRET_KEY = _secrets.secret_key
VAULT_KEYS = _secrets.vault_keys
CARD_FINGERPRINT_KEY = _secrets.card_fingerprint_key
AUDIT_PUBLIC_KEY = _secrets.audit_public_key
del _secrets

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "payflow.apps.PayFlowAdminConfig",  # django.contrib.admin on PayFlow's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "payflow",
    "ledger",
    "audit",
    "outbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "payflow.middleware.ContentSecurityPolicyMiddleware",
    "payflow.metrics.MetricsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "payflow.middleware.AuditContextMiddleware",
    "payflow.platform.faults.FaultInjectionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "payflow.urls"
WSGI_APPLICATION = "payflow.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASES = {
    "default": config.database_settings(
        env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'payflow.sqlite3'}"),
        conn_max_age=env.int("DATABASE_CONN_MAX_AGE", default=60),
        wsrep_sync_wait=env.int("DATABASE_WSREP_SYNC_WAIT", default=None),
        password=env.str("DATABASE_PASSWORD", default=""),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# payflow.platform.db.atomic: how often a transaction that lost a Galera certification conflict
# (1213) or a lock wait (1205) is run again, and the backoff between attempts.
DB_RETRY_ATTEMPTS = env.int("DB_RETRY_ATTEMPTS", default=5)
DB_RETRY_BASE_DELAY = env.float("DB_RETRY_BASE_DELAY", default=0.01)
DB_RETRY_MAX_DELAY = env.float("DB_RETRY_MAX_DELAY", default=0.5)

# --- auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"  # payflow.admin_site sends an auditor on to /audit/
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

SESSION_COOKIE_SECURE = not DEBUG and env.bool("SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# An operator's or auditor's session ends after this, active or not (Django's default is
# two weeks).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE_SECONDS", default=8 * 3600)
# Admin login throttling (payflow.login_guard): this many failures of one user name or one
# address within the window lock the login for the rest of it.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)
X_FRAME_OPTIONS = "DENY"

# --- TLS: production runs behind a TLS-terminating proxy (README, Configuration) --------
# TLS_PROXY: trust the proxy's X-Forwarded-Proto to tell HTTPS requests (only true when
# the app cannot be reached but through the proxy, as in docker/compose.yaml).
if env.bool("TLS_PROXY", default=not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# The probes and the scraper call the process over plain HTTP from inside its host.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading is the domain owner's request to the browsers' built-in lists, undone only
# over months: opt-in, and its reminder (security.W021) is not a defect of a deployment.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["payflow.api.parsers.StrictJSONParser"],
}
#: The version of the API's shapes an event was rendered with (``api_version`` on events
#: and webhooks); changed only with a change merchants must adapt to.
PAYFLOW_API_VERSION = "2026-12-01"
SPECTACULAR_SETTINGS = {
    "TITLE": "PayFlow merchant API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /v1/docs loads Swagger UI from PayFlow's static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Three resources have a status, each its own set: each its own named enum.
    "ENUM_NAME_OVERRIDES": {
        "TransactionStatusEnum": "payflow.api.serializers.TRANSACTION_STATUSES",
        "WebhookEndpointStatusEnum": "payflow.api.webhooks.ENDPOINT_STATUSES",
        "WebhookDeliveryStatusEnum": "payflow.api.webhooks.DELIVERY_STATUSES",
    },
}

# --- Celery ---------------------------------------------------------------------------
# Default: kombu's filesystem transport under var/celery, so `make run` needs no broker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_FILESYSTEM_DIR = VAR_DIR / "celery"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(CELERY_FILESYSTEM_DIR / "queue"),
        "data_folder_out": str(CELERY_FILESYSTEM_DIR / "queue"),
        "processed_folder": str(CELERY_FILESYSTEM_DIR / "processed"),
        # The exchange tables (kombu's default is ./control, beside manage.py).
        "control_folder": str(CELERY_FILESYSTEM_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {}
)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The scheduled jobs (DESIGN.md section 9). Each is idempotent and safe to overlap.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "outbox-purge": {"task": "outbox.purge", "schedule": crontab(hour=1, minute=30)},
    "audit-verify-incremental": {
        "task": "audit.verify",
        "schedule": 3600.0,
        "kwargs": {"incremental": True},
    },
    "audit-verify-full": {"task": "audit.verify", "schedule": crontab(hour=0, minute=30)},
    "idempotency-purge": {"task": "payflow.idempotency_purge", "schedule": 3600.0},
    "webhook-secrets-reseal": {
        "task": "payflow.webhook_secrets_reseal",
        "schedule": crontab(hour=2, minute=15),
    },
    "webhook-deliveries-purge": {
        "task": "payflow.webhook_deliveries_purge",
        "schedule": crontab(minute=45),
    },
    # Payments left initiated and acquirer commands left pending: resolved by inquiry.
    "recover-in-flight": {"task": "ledger.recover_in_flight", "schedule": 60.0},
    "settlement": {"task": "ledger.settlement_run", "schedule": crontab(hour=2, minute=0)},
    "ledger-invariants": {"task": "ledger.check_invariants", "schedule": crontab(hour=3, minute=0)},
    "vault-rotation-check": {
        "task": "ledger.vault_rotation_check",
        "schedule": crontab(hour=4, minute=0),
    },
    "vault-reencrypt": {"task": "ledger.vault_reencrypt", "schedule": 3600.0},
    # Audit archiving (issue 7): rows older than AUDIT_ARCHIVE_AFTER to verified segments,
    # then segments older than the retention purged.
    "audit-archive": {"task": "audit.archive", "schedule": crontab(hour=5, minute=0)},
    "audit-retention-purge": {
        "task": "audit.retention_purge",
        "schedule": crontab(hour=5, minute=30),
    },
}
# Beat's runs carry the job's name in a header: a job an operator paused (admin, scheduled
# jobs) skips those runs, and only those (payflow.jobs.job_paused).
for _job, _entry in CELERY_BEAT_SCHEDULE.items():
    _entry.setdefault("options", {})["headers"] = {"payflow_job": _job}

# --- Kafka ----------------------------------------------------------------------------
# "embedded": the development broker started by `manage.py kafka_dev_broker`, whose
# bootstrap address is read from KAFKA_DEV_BOOTSTRAP_FILE at connect time.
KAFKA_BOOTSTRAP_SERVERS = env.str("KAFKA_BOOTSTRAP_SERVERS", default="embedded")
KAFKA_DEV_BOOTSTRAP_FILE = Path(
    env.str("KAFKA_DEV_BOOTSTRAP_FILE", default=str(VAR_DIR / "kafka-bootstrap"))
)
KAFKA_TOPIC_PREFIX = env.str("KAFKA_TOPIC_PREFIX", default="")
KAFKA_HEALTH_TIMEOUT = env.float("KAFKA_HEALTH_TIMEOUT", default=2.0)

# --- logging --------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "plain" (development) or "json" (one object a line, for log shippers; production sets it).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("LOG_FORMAT must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "payflow.logging.JsonFormatter"},
    },
    "filters": {
        # Request id, actor, merchant and task id of the current request or task.
        "log_context": {"()": "payflow.logging.LogContextFilter"},
        # The backstop behind "a PAN is never logged": masks PAN-shaped digit runs.
        "pan_redaction": {"()": "payflow.logging.PanRedactingFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["log_context", "pan_redaction"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's own handlers (a console handler when DEBUG is on, mail to ADMINS when it is
    # off, runserver's) have no PAN filter, and the console one wrote each 4xx a second
    # time next to the root's: Django's loggers keep none and propagate to the root.
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
    },
}

# --- acquirer and in-flight work (DESIGN.md section 3) ----------------------------------
# One acquirer per mode: test keys reach the simulator; live keys reach LIVE_ACQUIRER_CLASS,
# and while it is empty live payments are refused (check --deploy refuses the simulator).
TEST_ACQUIRER_CLASS = env.str("TEST_ACQUIRER_CLASS", default="ledger.simulator.SimulatedAcquirer")
LIVE_ACQUIRER_CLASS = env.str("LIVE_ACQUIRER_CLASS", default="")
ACQUIRER_LATENCY_SECONDS = env.float("ACQUIRER_LATENCY_SECONDS", default=0.0)
# The simulator refuses every connection (drills and tests: the acquirer is down).
ACQUIRER_SIMULATOR_DOWN = env.bool("ACQUIRER_SIMULATOR_DOWN", default=False)
# Every acquirer call gives up after this; the outcome is then unknown and resolved by
# inquiry. The Idempotency-Key claim and the recovery threshold must outlast a request's
# calls (an authorization and an inquiry): payflow.config.acquirer_timings checks it.
ACQUIRER_TIMEOUT_SECONDS = env.float("ACQUIRER_TIMEOUT_SECONDS", default=10.0)
# A command (capture, void, refund) the acquirer did not answer is sent again after a
# jittered, doubling delay between these bounds.
ACQUIRER_RETRY_BASE_SECONDS = env.float("ACQUIRER_RETRY_BASE_SECONDS", default=5.0)
ACQUIRER_RETRY_MAX_SECONDS = env.float("ACQUIRER_RETRY_MAX_SECONDS", default=300.0)
# The recovery job (every minute) resolves payments left initiated, and commands left
# pending, for longer than this.
PAYMENT_RECOVERY_AFTER_SECONDS = env.int("PAYMENT_RECOVERY_AFTER_SECONDS", default=60)
# ledger_check_invariants reports work still in flight after this long: recovery is not
# running, or the acquirer has not answered for that long.
IN_FLIGHT_ALARM_SECONDS = env.int("IN_FLIGHT_ALARM_SECONDS", default=900)
IDEMPOTENCY_LOCK_SECONDS = env.int("IDEMPOTENCY_LOCK_SECONDS", default=60)
config.acquirer_timings(
    timeout=ACQUIRER_TIMEOUT_SECONDS,
    claim=IDEMPOTENCY_LOCK_SECONDS,
    recovery_after=PAYMENT_RECOVERY_AFTER_SECONDS,
)
# Crash tests only (payflow.platform.faults): a request's X-PayFlow-Fault header may kill its
# process at a named point. `manage.py check --deploy` fails while it is on.
FAULT_INJECTION = env.bool("FAULT_INJECTION", default=False)

# --- merchant API ---------------------------------------------------------------------
IDEMPOTENCY_RETENTION_HOURS = max(24, env.int("IDEMPOTENCY_RETENTION_HOURS", default=48))
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="100/second")
# How long a process keeps an API key with its merchant, a card token and the like in
# memory (payflow.platform.caches): a revocation, suspension or erasure made by another
# process takes effect here within this bound (at once in the process that made it).
# 0 turns the caches off.
API_CACHE_SECONDS = env.float("API_CACHE_SECONDS", default=5.0)
CACHES = {"default": config.cache_settings(env)}
REST_FRAMEWORK.update(
    {
        "DEFAULT_AUTHENTICATION_CLASSES": ["payflow.api.auth.ApiKeyAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": [
            "payflow.api.auth.MerchantAuthenticated",
            # After authentication, before the view: no card number outside card[number].
            "payflow.api.free_text.NoCardNumbersInText",
        ],
        "DEFAULT_THROTTLE_CLASSES": ["payflow.api.auth.ApiKeyRateThrottle"],
        "EXCEPTION_HANDLER": "payflow.api.errors.api_exception_handler",
        "UNAUTHENTICATED_USER": None,
    }
)

# --- outbox ---------------------------------------------------------------------------
OUTBOX_RELAY_PARTITIONS = env.int("OUTBOX_RELAY_PARTITIONS", default=8)
# The relay process (manage.py outbox_relay) polls for pending events: at once again after
# a batch, then ever more slowly while idle, up to this interval (seconds).
OUTBOX_RELAY_IDLE_INTERVAL = env.float("OUTBOX_RELAY_IDLE_INTERVAL", default=0.1)
# Touched on every loop of the relay (its container's health check reads it).
OUTBOX_RELAY_HEARTBEAT_FILE = VAR_DIR / "outbox-relay.alive"

# --- merchant webhooks (payflow/webhooks, docs/webhooks.md) ------------------------------
WEBHOOK_CONSUMER_GROUP = env.str("WEBHOOK_CONSUMER_GROUP", default="payflow-webhooks")
WEBHOOK_TIMEOUT = config.duration(env.str("WEBHOOK_TIMEOUT", default="10s"))
WEBHOOK_RETRY_BASE = config.duration(env.str("WEBHOOK_RETRY_BASE", default="30s"))
WEBHOOK_RETRY_MAX_DELAY = config.duration(env.str("WEBHOOK_RETRY_MAX_DELAY", default="6h"))
WEBHOOK_RETRY_SPAN = config.duration(env.str("WEBHOOK_RETRY_SPAN", default="3d"))
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=8)
# Finished deliveries (and their attempts) kept for the merchant and operators to read.
WEBHOOK_DELIVERY_RETENTION = config.duration(env.str("WEBHOOK_DELIVERY_RETENTION", default="30d"))
# Touched on every loop of the dispatcher (its container's health check reads it).
WEBHOOK_HEARTBEAT_FILE = VAR_DIR / "webhook-dispatcher.alive"
# Test-mode endpoints may point at private and loopback addresses (a developer's local
# receiver); live mode never may. On in `make run`'s .env and in the test suite.
WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST", default=False)
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=500)
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=30)
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=10)
OUTBOX_RETRY_BASE_SECONDS = env.float("OUTBOX_RETRY_BASE_SECONDS", default=1.0)
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=300.0)
OUTBOX_DELIVERY_TIMEOUT_MS = env.int("OUTBOX_DELIVERY_TIMEOUT_MS", default=30000)
OUTBOX_RETENTION_HOURS = env.int(
    "OUTBOX_RETENTION_HOURS", default=96
)  # ≥ the webhook retry span + 1 day

# --- audit ----------------------------------------------------------------------------
# The log (DESIGN.md section 6, docs/audit-formats.md): its origin is the name of its key.
AUDIT_LOG_ORIGIN = AUDIT_PUBLIC_KEY.split("+", 1)[0]
# The sequencer seals the log at least this often while it grows (seconds).
AUDIT_CHECKPOINT_INTERVAL = env.float("AUDIT_CHECKPOINT_INTERVAL", default=1.0)
# An entry id this much older than a higher one seen has committed or never will.
AUDIT_SEQUENCER_SETTLE_SECONDS = env.float("AUDIT_SEQUENCER_SETTLE_SECONDS", default=10.0)
AUDIT_SEQUENCER_LEASE_SECONDS = env.int("AUDIT_SEQUENCER_LEASE_SECONDS", default=15)
# readyz and the metric call the sequencer behind when entries wait longer than this.
AUDIT_SEQUENCER_MAX_LAG_SECONDS = env.float("AUDIT_SEQUENCER_MAX_LAG_SECONDS", default=5.0)
# Witnesses whose cosignatures the log accepts, and how many evidence needs.
AUDIT_WITNESS_KEYS = config.witness_keys(env)
AUDIT_WITNESS_QUORUM = env.int("AUDIT_WITNESS_QUORUM", default=0)
# Personal data in entries and events is sealed per data subject (audit/subjects.py); a
# process keeps opened subject keys this long, so an erasure reaches every process within it.
AUDIT_SUBJECT_KEY_CACHE_SECONDS = env.float("AUDIT_SUBJECT_KEY_CACHE_SECONDS", default=60.0)
# Archiving (DESIGN.md section 6): rows older than AUDIT_ARCHIVE_AFTER go to segment files
# in the "audit_archive" storage; segments older than AUDIT_RETENTION are purged.
# Durations: a number of days, or with a unit: "365d", "12h", "7y" (a year is 365.25 days).
AUDIT_ARCHIVE_AFTER = config.duration(env.str("AUDIT_ARCHIVE_AFTER", default="365d"))
AUDIT_RETENTION = config.duration(env.str("AUDIT_RETENTION", default="7y"))
AUDIT_SEGMENT_MAX_ROWS = env.int("AUDIT_SEGMENT_MAX_ROWS", default=50_000)
AUDIT_SEGMENT_MAX_BYTES = env.int("AUDIT_SEGMENT_MAX_BYTES", default=64 * 1024 * 1024)
AUDIT_ARCHIVE_DELETE_BATCH = env.int("AUDIT_ARCHIVE_DELETE_BATCH", default=500)
AUDIT_ARCHIVE_LEASE_SECONDS = env.int("AUDIT_ARCHIVE_LEASE_SECONDS", default=900)
# AUDIT_ARCHIVE_STORAGE "local": a directory (AUDIT_ARCHIVE_DIR); "s3": an S3-compatible
# bucket with Object Lock, through django-storages (pip install 'payflow[s3]'); see README.
STORAGES["audit_archive"] = config.archive_storage(env, VAR_DIR)
# Production: route the archiver to a worker that connects as the archiver database user
# (`manage.py audit_grants`); empty means the default queue.
AUDIT_ARCHIVER_QUEUE = env.str("AUDIT_ARCHIVER_QUEUE", default="")
if AUDIT_ARCHIVER_QUEUE:
    CELERY_TASK_ROUTES = {
        "audit.archive": {"queue": AUDIT_ARCHIVER_QUEUE},
        "audit.retention_purge": {"queue": AUDIT_ARCHIVER_QUEUE},
    }
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- operations: metrics, readiness ---------------------------------------------------
# /metrics: with a token, bearer only; without, only from these networks (see README).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
METRICS_PAYMENTS_WINDOW_SECONDS = env.int("METRICS_PAYMENTS_WINDOW_SECONDS", default=3600)
# /readyz reports "degraded" when the oldest pending outbox event is older than this.
READYZ_OUTBOX_LAG_SECONDS = env.float("READYZ_OUTBOX_LAG_SECONDS", default=300.0)
READYZ_BROKER_TIMEOUT = env.float("READYZ_BROKER_TIMEOUT", default=2.0)
