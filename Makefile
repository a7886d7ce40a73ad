.PHONY: run test lint install clean bench bench-quick drill

# The whole stack on embedded defaults: web, worker, beat, development Kafka broker.
run:
	scripts/run.sh

# Install what the tests need and run the full suite against the real parts.
test:
	scripts/test.sh

# The benchmark (bench/README.md): about 15 minutes; the quick one under 3. Not a test.
bench:
	scripts/bench.sh

bench-quick:
	scripts/bench.sh --quick

# The fault drills (tests/drill/run.py): production's topology on loopback under load, each
# fault twice, then the history checker's table. About 10 minutes. make test runs a short one.
drill: install
	.venv/bin/python -m tests.drill

install:
	scripts/system-deps.sh test
	scripts/venv.sh

lint: install
	.venv/bin/ruff check .

clean:
	rm -rf var .venv .pytest_cache
