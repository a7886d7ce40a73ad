#!/usr/bin/env bash
# `make bench` / `make bench-quick`: install what the benchmark needs, make sure the servers
# run, then measure and write bench/results/<date>[-quick].{json,md,png}. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh bench
scripts/venv.sh
scripts/services.sh
exec .venv/bin/python -m bench.run "$@"
