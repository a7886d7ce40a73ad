#!/usr/bin/env bash
# `make test`: install what the suite needs, make sure the servers run, run the whole suite
# against MariaDB (and the Galera cluster, Kafka-protocol broker, Celery worker and headless
# Chromium that the fixtures start), after the lint, the layers contract and the type check.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh test
scripts/venv.sh
scripts/services.sh
export DATABASE_URL=${TEST_DATABASE_URL:-mysql://root@127.0.0.1:3306/payflow}
.venv/bin/ruff check .
# The layers contract (pyproject.toml, tool.importlinter) and the type check of the apps.
.venv/bin/lint-imports
.venv/bin/mypy --no-incremental  # a stale cache reported django-manager-missing
exec .venv/bin/python -m pytest --durations=25 "$@"
