#!/usr/bin/env bash
# Fuzz the parsers with libFuzzer (clang, ASan + UBSan): safetensors files,
# config.json, input decks (tests/fuzz/fuzz_*.c), each for SECONDS starting
# from the seeds in tests/fuzz/corpus/<target>/ (copied: new inputs stay in
# the work directory). A crash, a sanitizer report or a leak fails the run
# and leaves the reproducer in build-fuzz/crash-*.
#   usage: tools/fuzz.sh [SECONDS]       (default 60 per target)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
command -v clang > /dev/null || { echo "fuzz: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
cmake -S "$here" -B "$here/build-fuzz" -DCMAKE_C_COMPILER=clang -DAPTQ_FUZZ=ON -DAPTQ_NATIVE=OFF -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$here/build-fuzz" -j "$(nproc)" --target fuzz_safetensors fuzz_config fuzz_deck > /dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in safetensors config deck; do
  mkdir -p "$work/$t"
  cp "$here/tests/fuzz/corpus/$t/"* "$work/$t/"
  echo "fuzz: $t for $seconds s"
  (cd "$here/build-fuzz" && ./fuzz_$t -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 "$work/$t" 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|INFO: Running)|ERROR|crash-" || true)
  # libFuzzer exits non-zero on a finding; the pipeline above hides it, so check for a reproducer
  if ls "$here/build-fuzz"/crash-* "$here/build-fuzz"/leak-* "$here/build-fuzz"/timeout-* > /dev/null 2>&1; then
    echo "fuzz: $t: FAILED, reproducer in build-fuzz/" >&2
    exit 1
  fi
done
echo "fuzz: all targets PASSED"
