#!/usr/bin/env bash
# Every test on a fresh machine: install dependencies, build, run the C++ and Python tests (ctest), build the API
# reference (warnings fail), then build the C++ tests with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) and
# run them, and last the fuzzer over the C ABI (clang's libFuzzer, its own sanitizer build in build-fuzz/, shared
# with scripts/fuzz.sh): the committed corpus replayed, then a short run from it (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
ctest --test-dir build --output-on-failure
scripts/docs.sh build-docs build
scripts/build.sh build-sanitize -DXENT_SANITIZE=ON -DXENT_PYTHON=OFF -DXENT_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-sanitize --output-on-failure
CC=clang CXX=clang++ scripts/build.sh build-fuzz -DXENT_SANITIZE=ON -DXENT_FUZZ=ON -DXENT_PYTHON=OFF -DXENT_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo --target xent_fuzz
ctest --test-dir build-fuzz --output-on-failure -R '^fuzz_'
echo "all tests passed"
