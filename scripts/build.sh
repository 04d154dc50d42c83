#!/usr/bin/env bash
# Builds xent (library, tests, benchmark, Python package) into build/ (or $1). Extra arguments go to CMake's
# configure step, except `--target T...` (at the end), which builds only those targets.
#   scripts/build.sh                      release build in build/
#   scripts/build.sh build-asan -DXENT_SANITIZE=ON -DXENT_PYTHON=OFF
#   scripts/build.sh build --target seed_example _xent
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
configure=() targets=()
while (($#)); do
  if [[ $1 == --target ]]; then shift; targets=("$@"); break; fi
  configure+=("$1"); shift
done
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=/usr/bin/python3 "${configure[@]}" >/dev/null
cmake --build "$build_dir" --parallel ${targets:+--target "${targets[@]}"}
