# The user's interface. Every target installs what is missing first (make deps).
# CMake does the building; this file only chooses build directories and flavours.

JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CMAKE ?= cmake

.PHONY: all deps build test bench fuzz run tsan clean format

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@$(CMAKE) --build build -j $(JOBS)

# Sanitized build; the last lines are CTest's summary.
test: deps
	@$(CMAKE) -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCATRACA_SANITIZE=address,undefined >/dev/null
	@$(CMAKE) --build build/asan -j $(JOBS)
	@cd build/asan && ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer over the threaded parts (separate from make test).
tsan: deps
	@$(CMAKE) -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug -DCATRACA_SANITIZE=thread >/dev/null
	@$(CMAKE) --build build/tsan -j $(JOBS)
	@cd build/tsan && ctest --output-on-failure -L threads

# Optimised (-O2), asserts on, one program per benchmark; each ends with a JSON line.
bench: build
	@set -e; for b in build/bench/bench_*; do echo "== $$b"; "$$b"; done
	@echo "== bench/service.py"; CATRACA_BIN=build/catraca python3 bench/service.py
	@echo "== bench/distributed.py"; CATRACA_BIN=build/catraca python3 bench/distributed.py
	@echo "== bench/catchup.py"; CATRACA_BIN=build/catraca python3 bench/catchup.py
	@echo "== bench/rush_vs_wrk.sh"; CATRACA_BIN=build/catraca bash bench/rush_vs_wrk.sh
	@echo "== bench/idle_connections.py"; CATRACA_BIN=build/catraca python3 bench/idle_connections.py
	@echo "== bench/sizing.py"; CATRACA_BIN=build/catraca python3 bench/sizing.py
	@echo "== tests/web/lighthouse.mjs (median of 3)"; CATRACA_BIN=build/catraca bash scripts/web-test.sh lighthouse 3
	@echo "== bench/receipts.py"; CATRACA_BIN=build/catraca python3 bench/receipts.py
	@echo "== bench/audit.py"; CATRACA_BIN=build/catraca python3 bench/audit.py --distributed

fuzz: deps
	@CC=clang $(CMAKE) -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DCATRACA_FUZZ=ON >/dev/null
	@$(CMAKE) --build build/fuzz -j $(JOBS)
	@set -e; for f in build/fuzz/fuzz_*; do \
		name=$$(basename $$f); mkdir -p fuzz/corpus-run/$$name; \
		echo "== $$name for $(FUZZ_SECONDS) s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 fuzz/corpus-run/$$name fuzz/corpus/$$name; \
	done

# The embedded service with the demo on; scripts/run.sh prints the pages' addresses and a curl
# walkthrough. make run ARGS="--listen 127.0.0.1:9000" passes arguments to catraca serve.
run: build
	@bash scripts/run.sh $(ARGS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
