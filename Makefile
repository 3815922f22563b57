# kinesd: one non-recursive Makefile. Each layer compiles with its own include list, so an
# upward include (storage -> api, api -> server) fails to build.
#   make            build build/kinesd
#   make run        install missing packages, build, start on 127.0.0.1:4567 (./kinesd-data)
#   make test       install missing packages, build, run unit and integration tests and the
#                   integration suite against two front-ends over one PostgreSQL (pg-suite),
#                   then unit and integration tests again under AddressSanitizer and UBSan
#   make asan       only the sanitizer run
#   make bench      load benchmark: kinesd, kinesalite and kinesis-mock side by side (about 6 min;
#                   BENCH_MODES, BENCH_SERVERS, BENCH_SECONDS select parts: tools/bench/run.sh -h)
#   make bench-pg   the same load on LMDB and on one and two front-ends over a local PostgreSQL
#   make lint       clang-format check and a scan for banned functions
#   make fuzz       each libFuzzer harness of tests/fuzz for FUZZ_SECONDS (60) under ASan/UBSan

CC      ?= cc
BUILD   ?= build
PKGS    := lmdb libsodium libssl libcrypto libnghttp2 libpq jansson
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wvla
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -pthread -MMD -MP $(SAN)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
LDFLAGS += $(SAN)
PG_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null)
VERSION := 0.1.0

# common/ is the leaf every layer may include (klog.h, the diagnostics); it includes nothing
COMMON_SRC  := $(wildcard common/*.c)
STORAGE_SRC := $(wildcard storage/*.c storage/lmdb/*.c storage/pg/*.c)
API_SRC     := $(wildcard api/*.c api/kms/*.c)
SERVER_SRC  := $(wildcard server/*.c)
ADMIN_SRC   := $(wildcard tools/admin/*.c)

# linked wherever storage is, so common's objects ride along with it
STORAGE_OBJ := $(STORAGE_SRC:%.c=$(BUILD)/%.o) $(COMMON_SRC:%.c=$(BUILD)/%.o)
# the fault-injecting engine is linked into the storage tests only
FAULT_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard storage/fault/*.c))
API_OBJ     := $(API_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ  := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/server/console_files.o
ADMIN_OBJ   := $(ADMIN_SRC:%.c=$(BUILD)/%.o)
# The web console's static files, compiled into the binary (server/console.h).
CONSOLE_FILES := $(sort $(wildcard server/console/*.html server/console/*.js server/console/*.css))

UNIT_SRC := $(wildcard tests/unit/*/*.c tests/unit/*/*/*.c)
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)

.PHONY: all run test unit integration pg-suite asan bench bench-pg lint format clean deps deps-test fuzz fuzz-bins
all: $(BUILD)/kinesd $(BUILD)/kinesd-admin

$(BUILD)/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Icommon -c $< -o $@
$(BUILD)/storage/%.o: storage/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Istorage -Icommon $(PG_CFLAGS) -c $< -o $@
$(BUILD)/api/%.o: api/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iapi -Istorage -Icommon -DKINESD_VERSION='"$(VERSION)"' -c $< -o $@
$(BUILD)/server/%.o: server/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iserver -Iapi -Icommon -DKINESD_VERSION='"$(VERSION)"' -c $< -o $@

# One C array per console file (od and sed, both in every Debian), then the name table.
$(BUILD)/server/console_files.c: $(CONSOLE_FILES) Makefile
	@mkdir -p $(@D)
	@{ echo '#include "console.h"'; i=0; for f in $(CONSOLE_FILES); do \
	    echo "static const unsigned char f$$i[] = {"; \
	    od -An -v -tx1 "$$f" | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; echo "};"; i=$$((i+1)); done; \
	  echo "const struct console_file console_files[] = {"; i=0; for f in $(CONSOLE_FILES); do \
	    echo "    {\"$${f##*/}\", f$$i, sizeof f$$i},"; i=$$((i+1)); done; \
	  echo "};"; echo "const size_t console_nfiles = $$i;"; } > $@.tmp && mv $@.tmp $@
$(BUILD)/server/console_files.o: $(BUILD)/server/console_files.c
	$(CC) $(CFLAGS) -Iserver -c $< -o $@

$(BUILD)/kinesd: $(SERVER_OBJ) $(API_OBJ) $(STORAGE_OBJ)
	$(CC) $(LDFLAGS) $(filter %.o,$^) -o $@ $(LDLIBS)

# the admin tool: storage, and from the API layer the key hierarchy and the codecs of sequence
# numbers (tools/admin/main.c says why); nothing of the server
$(BUILD)/tools/admin/%.o: tools/admin/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itools/admin -Iapi -Istorage -c $< -o $@
$(BUILD)/kinesd-admin: $(ADMIN_OBJ) $(API_OBJ) $(STORAGE_OBJ)
	$(CC) $(LDFLAGS) $(filter %.o,$^) -o $@ $(LDLIBS)

# tests/unit/storage/lmdb/* include the engine's internal headers as "lmdb/wal.h"; harness.h is
# shared by the storage tests
$(BUILD)/tests/unit/storage/%: tests/unit/storage/%.c $(STORAGE_OBJ) $(FAULT_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Istorage -Icommon -Itests/unit -Itests/unit/storage $(PG_CFLAGS) $(filter %.c %.o,$^) -o $@ $(LDLIBS)
$(BUILD)/tests/unit/api/%: tests/unit/api/%.c $(API_OBJ) $(STORAGE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iapi -Istorage -Icommon -Itests/unit $(PG_CFLAGS) $(filter %.c %.o,$^) -o $@ $(LDLIBS)

$(BUILD)/kbench: tools/bench/kbench.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 $(WARN) -pthread $< -o $@ -lcrypto -lm

# Debian packages the build and the tests need; installed only when missing.
BUILD_DEBS := build-essential pkg-config liblmdb-dev libsodium-dev libssl-dev libnghttp2-dev libpq-dev libjansson-dev
TEST_DEBS  := python3-boto3 python3-pytest awscli chromium python3-websocket postgresql python3-lmdb curl nghttp2-client golang-go golang-github-aws-aws-sdk-go-dev python3-prometheus-client haproxy
deps:
	@tools/install-deps.sh $(BUILD_DEBS)
deps-test:
	@tools/install-deps.sh $(BUILD_DEBS) $(TEST_DEBS)
	@tools/install-npm.sh

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/kinesd --host 127.0.0.1 --port 4567 --data-dir ./kinesd-data

# with a throwaway PostgreSQL for the pg engine's tests
unit: $(UNIT_BIN)
	@tools/with-postgres.sh tools/run-unit.sh $(UNIT_BIN)

# with a throwaway PostgreSQL for the tests of several front-ends over it
integration: $(BUILD)/kinesd $(BUILD)/kinesd-admin
	@KINESD_BIN=$(BUILD)/kinesd tools/with-postgres.sh tools/run-integration.sh

# the integration suite again, against two front-ends sharing one PostgreSQL, each request
# sent to either (tools/run-pg-suite.sh). In make test's plain pass only: it takes about 8
# minutes on 2 busy cores, and under ASan the PostgreSQL engine's own tests (test_pg_*.py,
# test_haproxy.py, in integration) cover its code
pg-suite: $(BUILD)/kinesd
	@KINESD_BIN=$(BUILD)/kinesd tools/run-pg-suite.sh

SANITIZE := BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"

# Every test, then every test again on the AddressSanitizer/UBSan build.
test: deps-test
	@$(MAKE) --no-print-directory unit integration pg-suite
	@echo "== the same tests under AddressSanitizer and UBSan =="
	@$(MAKE) --no-print-directory $(SANITIZE) unit integration

asan: deps-test
	@$(MAKE) --no-print-directory $(SANITIZE) unit integration

# h2load (nghttp2-client) drives the HTTP/2 PutRecord mode of the benchmark
BENCH_DEBS := nghttp2-client
bench: deps-test $(BUILD)/kinesd $(BUILD)/kbench
	@tools/install-deps.sh $(BENCH_DEBS)
	@tools/bench/run.sh

# kinesd on LMDB vs one and two front-ends over a throwaway local PostgreSQL (about 2 min)
bench-pg: deps-test $(BUILD)/kinesd $(BUILD)/kbench
	@tools/with-postgres.sh env BENCH_SERVERS="kinesd kinesd-pg kinesd-pg2" \
		BENCH_MODES="$${BENCH_MODES:-putrecords putrecord getrecords}" tools/bench/run.sh

# libFuzzer harnesses (not part of `make test`): objects built with clang under ASan/UBSan in
# build-fuzz, each harness run for FUZZ_SECONDS on its seed corpus (tests/fuzz/corpus/<harness>).
FUZZ_SECONDS ?= 60
FUZZ_DEBS    := clang libclang-rt-14-dev
FUZZ_HARNESS := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
# (clang warns about one gcc-clean idiom of the sources, `!strcmp(..) == 0`)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fsanitize=fuzzer-no-link \
	  -Wno-logical-not-parentheses
fuzz:
	@tools/install-deps.sh $(BUILD_DEBS) $(FUZZ_DEBS)
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="$(FUZZ_SAN)" fuzz-bins
	@tools/run-fuzz.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_HARNESS)
fuzz-bins: $(FUZZ_HARNESS:%=$(BUILD)/tests/fuzz/%)
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(API_OBJ) $(STORAGE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -Iapi -Istorage -Icommon -Itests/fuzz $(filter %.c %.o,$^) -o $@ $(LDLIBS)

lint:
	@tools/lint.sh

format:
	@tools/lint.sh --fix

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
