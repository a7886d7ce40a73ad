"""Settings for the test suite: the real settings module with test values in the environment.

The suite runs against MariaDB (``DATABASE_URL``, default the local server) and never reads
the developer's ``.env``. Secrets are fixed test values, clearly not production ones.
"""

import os

os.environ["PAYFLOW_ENV_FILE"] = ""
os.environ.setdefault("DATABASE_URL", "mysql://root@127.0.0.1:3306/payflow")
os.environ.setdefault("DEBUG", "False")
os.environ.setdefault("SECRET_KEY", "test-only-" + "k3Jq8vZp2mNw5xRt7yBc4dFg6hLs9aE0uIoP1" * 2)
# Fixed test keys (32 random bytes each, generated once for the suite).
os.environ.setdefault(
    "VAULT_KEYS",
    "1:3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=,2:mZ9k0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s8=",
)
os.environ.setdefault("CARD_FINGERPRINT_KEY", "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGw=")
# The audit log's test key pair. Only the public half is in the settings; tests that run a
# sequencer give it the signer key themselves (tests.audit.logtools.TEST_SIGNER_KEY), as
# production gives it to the sequencer process alone.
os.environ.setdefault(
    "AUDIT_PUBLIC_KEY", "payflow.test/audit+fe41b70c+AWIzc27ToPjqAbCsK3e9Qzis0hYhcuVSvVsg31wW9NxJ"
)
os.environ.pop("AUDIT_SIGNING_KEY", None)
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("PAYFLOW_VAR_DIR", "/tmp/payflow-test-var")
# Playwright's sync API runs an event loop in the test thread; the ORM calls made by the
# tests in that thread are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# Test-mode webhooks to the suite's receivers on loopback.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST", "True")

from payflow.settings import *

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_COOKIES = False
# The test client and the test servers speak plain HTTP on loopback.
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise expects it
