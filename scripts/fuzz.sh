#!/usr/bin/env bash
# Fuzzing campaigns over the C ABI, one per entry point (docs/reliability.md has the figures of the last ones).
#   scripts/fuzz.sh [SECONDS] [ENTRY...]     default: 600 seconds for each of the entry points below
# Builds the fuzzer (clang, ASan, UBSan, libFuzzer: -DXENT_FUZZ=ON) in build-fuzz/ if needed, then runs
# each campaign from the committed corpus (tests/fuzz/corpus), two at a time, writing into fuzz-campaign/:
# <entry>.log (libFuzzer's output), <entry>/ (the inputs it kept) and crash-* reproducers. Prints one line per
# campaign: executions, executions per second, coverage (edges) and features, crashes. Add a new crash
# reproducer to tests/fuzz/corpus/ once it is fixed: the fuzz_corpus test runs every file there.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
entries=("$@")
if ((${#entries[@]} == 0)); then
  entries=(softmax_cross_entropy softmax_cross_entropy_grad sparse_softmax_cross_entropy
           sparse_softmax_cross_entropy_grad cross_entropy cross_entropy_grad loss_shape cross_entropy_loss_shape
           shards linear_cross_entropy linear_cross_entropy_grad linear_shards)
fi
build=${XENT_FUZZ_BUILD:-build-fuzz}
if [[ ! -x $build/xent_fuzz ]]; then
  CC=clang CXX=clang++ scripts/build.sh "$build" -DXENT_SANITIZE=ON -DXENT_FUZZ=ON -DXENT_PYTHON=OFF \
    -DXENT_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
fuzzer=$(realpath "$build/xent_fuzz")
corpus=$(realpath tests/fuzz/corpus)
mkdir -p fuzz-campaign
cd fuzz-campaign
run() {
  local entry=$1 start=$SECONDS
  mkdir -p "$entry"
  XENT_FUZZ_ENTRY=$entry "$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$entry-" "$entry" "$corpus" >"$entry.log" 2>&1 || true
  local execs cov ft crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$entry.log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$entry.log" | tail -1 | grep -o '[0-9]*' || echo '?')
  ft=$(grep -o 'ft: [0-9]*' "$entry.log" | tail -1 | grep -o '[0-9]*' || echo '?')
  crashes=$(find . -maxdepth 1 -name "$entry-*" -type f ! -name '*.log' | wc -l)
  local elapsed=$((SECONDS - start))  # less than $seconds when the campaign stopped at a finding
  printf '%-36s %4ss  %10s execs  %7s/s  cov %5s  ft %6s  crashes %s\n' "$entry" "$elapsed" "$execs" \
    "$(( ${execs//\?/0} / (elapsed > 0 ? elapsed : 1) ))" "$cov" "$ft" "$crashes"
}
for ((i = 0; i < ${#entries[@]}; i += 2)); do
  run "${entries[i]}" &
  if ((i + 1 < ${#entries[@]})); then run "${entries[i + 1]}" & fi
  wait
done
