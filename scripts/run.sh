#!/usr/bin/env bash
# `make run`: the whole stack on embedded defaults (SQLite, development Kafka broker, kombu
# filesystem transport): web (gunicorn), Celery worker, Celery beat, the outbox relay, the audit
# sequencer, the webhook dispatcher and the broker under honcho.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh run
scripts/venv.sh
mkdir -p var
.venv/bin/python -m payflow.config .env
# `make run` means the embedded defaults even if the shell exports other servers.
unset DATABASE_URL CELERY_BROKER_URL KAFKA_BOOTSTRAP_SERVERS
# A developer's test-mode webhook may point at a receiver on this machine (never live mode).
export WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST=${WEBHOOK_ALLOW_PRIVATE_URLS_IN_TEST:-True}
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput -v 0
.venv/bin/python manage.py seed_demo
port=${PAYFLOW_WEB_PORT:-8000}
cat <<TXT

PayFlow is starting (Ctrl-C stops everything):
  merchant API     http://127.0.0.1:${port}/v1/
  admin            http://127.0.0.1:${port}/admin/
  health           http://127.0.0.1:${port}/healthz   http://127.0.0.1:${port}/readyz
  Kafka (dev)      address in var/kafka-bootstrap; watch events: .venv/bin/python manage.py kafka_tail
  webhooks         the dispatcher delivers to /v1/webhook_endpoints (test mode may use http://127.0.0.1)

TXT
export PAYFLOW_WEB_PORT=$port
exec .venv/bin/honcho -f Procfile start
