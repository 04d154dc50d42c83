#!/usr/bin/env bash
# A short fuzzing run for CI: tests/fuzz/smoke.sh FUZZER CORPUS SECONDS
# Starts from the committed corpus, writes new inputs to a temporary directory (the corpus in the tree is not
# changed) and fails on the first crash, leak, timeout or broken invariant, leaving the reproducer in the current
# directory (crash-*, printed by libFuzzer).
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 "$work" "$corpus"
