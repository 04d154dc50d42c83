#!/usr/bin/env bash
# Every test on a fresh machine: install dependencies, build, run the C++ and Python tests (ctest), build the API
# reference (warnings fail), then build the C++ tests and the fuzzer over the C ABI with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer and run them (the fuzzer: its corpus, then a one-minute run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
ctest --test-dir build --output-on-failure
scripts/docs.sh build-docs build
CC=clang CXX=clang++ scripts/build.sh build-sanitize -DXENT_SANITIZE=ON -DXENT_FUZZ=ON -DXENT_PYTHON=OFF \
  -DXENT_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-sanitize --output-on-failure
echo "all tests passed"
