#!/usr/bin/env bash
# `make bench` / `make bench-quick`: install what the benchmark needs, make sure the servers
# run, then measure and write bench/results/<date>[-quick].{json,md,png}. Not part of `make test`.
# BENCH_DATABASE=<name> picks the bench's databases (<name>, <name>_relay, <name>_audit;
# default payflow_bench): see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh bench
scripts/venv.sh
scripts/services.sh
exec .venv/bin/python -m bench.run "$@"
