# Two entry points for a fresh machine: `make run` (demo) and `make test` (whole suite).
.PHONY: run test lint bench bench-quick

run:
	./scripts/run_demo.sh

test:
	./scripts/test.sh

lint:
	./scripts/test.sh --lint-only

bench:
	./scripts/bench.sh

bench-quick:
	./scripts/bench.sh --quick
