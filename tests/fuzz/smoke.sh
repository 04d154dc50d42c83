#!/usr/bin/env bash
# A short fuzzing run for CI: tests/fuzz/smoke.sh FUZZER CORPUS RUNS
# Starts from the committed corpus with a fixed seed and a fixed number of runs (18000 runs take 20-45 s on this
# project's machines), writes new inputs to a temporary directory (the corpus in the tree is not changed) and fails
# on the first crash, leak, timeout or broken invariant, leaving the reproducer in the current directory (crash-*;
# XENT_FUZZ_VERBOSE=1 FUZZER crash-... prints the call's inputs). An input decodes the same on every machine, but
# coverage differs between CPUs, so another kind of machine explores other inputs from the same seed.
set -uo pipefail
fuzzer=$1 corpus=$2 runs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# -use_cmp=0: no dictionary of compared values, whose entries depend on addresses (the same seed would not give the
# same inputs in another build directory or run).
"$fuzzer" -seed=1 -use_cmp=0 -runs="$runs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 "$work" "$corpus" \
  > "$work/log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
  # The finding first (CI shows the end of a long log): the sanitizer's or the harness's report and its stack, then
  # the reproducer's name and bytes.
  echo "fuzz_smoke: the fuzzer failed (exit $status); its report:"
  grep -m1 -A45 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|^xent fuzz:' "$work/log" | cut -c1-300
  echo "..."
  tail -n 8 "$work/log" | cut -c1-600
  exit "$status"
fi
tail -n 6 "$work/log"
