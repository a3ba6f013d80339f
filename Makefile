# Wraps CMake. Every target installs missing dependencies first
# (tools/deps.sh is idempotent and fast once everything is present).
BUILD ?= build
TEST_BUILD ?= build/asan
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

# CMake's generated makefiles run make recursively, and each level would
# print "Entering directory" and "Leaving directory" lines.
MAKEFLAGS += --no-print-directory

.PHONY: all deps build test demo bench bench-quick clean

all: build

deps:
	@tools/deps.sh all

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The test suite runs on a sanitizer build (ASan and UBSan).
test: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSANDLOT_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	@cd $(TEST_BUILD) && ctest --output-on-failure $(CTEST_ARGS)

demo: build
	@$(BUILD)/sandlot run examples/demo.lua

# Benchmarks (as root): sandlot against raw CRIU, side by side. Results go
# to $(BUILD)/bench/results.json and results.md; see docs/BENCHMARKS.md.
bench: build
	@$(BUILD)/sandlot run bench/run.lua

bench-quick: build
	@$(BUILD)/sandlot run bench/run.lua --quick

clean:
	rm -rf $(BUILD)
