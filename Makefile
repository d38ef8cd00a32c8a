# kizuna — wraps CMake. `make run` and `make test` are the two commands (see README).
PREFIX ?= /usr/local
DESTDIR ?=
JOBS ?= $(shell nproc)
BUILD := build
ASAN := build-asan
DATA ?= ./var

.PHONY: all deps run test test-release test-asan bench fuzz install clean

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/deps

run: all
	$(BUILD)/src/cli/kizuna serve --data $(DATA)

# The whole suite: release build, then everything again under ASan+UBSan with clang,
# including the fuzz targets' corpus replays.
test: test-release test-asan

test-release: all
	@scripts/deps --test
	cd $(BUILD) && ctest --output-on-failure -j 2

test-asan: deps
	CC=clang cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DKZ_SANITIZE=ON -DKZ_FUZZ=ON >/dev/null
	cmake --build $(ASAN) -j $(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j 2

bench: all
	@scripts/deps --bench
	bench/mqtt-vs-peers.sh

# Runs each fuzz target for FUZZ_SECONDS (default 60) on top of its corpus.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DKZ_SANITIZE=ON -DKZ_FUZZ=ON >/dev/null
	cmake --build $(ASAN) -j $(JOBS)
	for t in $(ASAN)/fuzz/fuzz_*; do \
		n=$$(basename $$t); mkdir -p $(ASAN)/fuzz/work-$$n; \
		$$t -max_total_time=$(FUZZ_SECONDS) $(ASAN)/fuzz/work-$$n fuzz/corpus/$$n || exit 1; \
	done

install: all
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN)
