.PHONY: run test lint install clean

# The whole stack on embedded defaults: web, worker, beat, development Kafka broker.
run:
	scripts/run.sh

# Install what the tests need and run the full suite against the real parts.
test:
	scripts/test.sh

install:
	scripts/system-deps.sh test
	scripts/venv.sh

lint: install
	.venv/bin/ruff check .

clean:
	rm -rf var .venv .pytest_cache
