# Two entry points for a fresh machine: `make run` (demo) and `make test` (whole suite).
# `make test-fast` is the inner loop: PostgreSQL + Redis, without the tests marked slow.
.PHONY: run test test-fast lint bench bench-quick

run:
	./scripts/run_demo.sh

test:
	./scripts/test.sh

test-fast:
	./scripts/test.sh --fast

lint:
	./scripts/test.sh --lint-only

bench:
	./scripts/bench.sh

bench-quick:
	./scripts/bench.sh --quick
