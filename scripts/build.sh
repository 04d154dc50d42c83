#!/usr/bin/env bash
# Builds xent (library, tests, benchmark, Python package) into build/ (or $1). Extra arguments go to CMake.
#   scripts/build.sh                      release build in build/
#   scripts/build.sh build-asan -DXENT_SANITIZE=ON -DXENT_PYTHON=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=/usr/bin/python3 "$@" >/dev/null
cmake --build "$build_dir" --parallel
