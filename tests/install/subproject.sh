#!/usr/bin/env bash
# Builds tests/install/subproject, which takes xent (the tree in $1) with FetchContent, and runs its program: it must
# print the seed example's loss. Run by ctest (subproject_consumer).
set -euo pipefail
source=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
want="[0.16984604, 0.82474494]"
cmake -S "$source/tests/install/subproject" -B "$work" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFETCHCONTENT_SOURCE_DIR_XENT="$source" -DFETCHCONTENT_FULLY_DISCONNECTED=ON >/dev/null
cmake --build "$work" --target subproject_consumer >/dev/null
got=$("$work/subproject_consumer")
[ "$got" = "$want" ] || { echo "FetchContent consumer printed $got, expected $want"; exit 1; }
echo "FetchContent (add_subdirectory) consumer: $got"
