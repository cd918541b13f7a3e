#!/usr/bin/env bash
# Fuzz the parsers with libFuzzer (clang, ASan + UBSan): safetensors files,
# config.json, input decks, quantized files and checkpoints (HDF5 images
# opened from memory) (tests/fuzz/fuzz_*.c), each for SECONDS starting from
# the seeds in tests/fuzz/corpus/<target>/ (copied: new inputs stay in the
# work directory), or for the HDF5 targets from valid small files made now
# by tests/fuzz/seed_h5.py (python3 with h5py). A crash, a sanitizer report
# or a leak fails the run and leaves the reproducer in build-fuzz/crash-*.
#   usage: tools/fuzz.sh [SECONDS]       (default 60 per target)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
command -v clang > /dev/null || { echo "fuzz: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
cmake -S "$here" -B "$here/build-fuzz" -DCMAKE_C_COMPILER=clang -DAPTQ_FUZZ=ON -DAPTQ_NATIVE=OFF -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$here/build-fuzz" -j "$(nproc)" --target fuzz_safetensors fuzz_config fuzz_deck fuzz_qfile fuzz_checkpoint > /dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LSAN_OPTIONS=suppressions=$here/tests/fuzz/lsan.supp
for t in safetensors config deck qfile checkpoint; do
  mkdir -p "$work/$t"
  opts=(-max_len=4096)
  asan=$ASAN_OPTIONS
  case $t in
    qfile | checkpoint)
      /usr/bin/python3 "$here/tests/fuzz/seed_h5.py" $t "$work/$t"
      # HDF5 allocates the sizes a damaged header claims (up to terabytes),
      # and takes a failed malloc as its error path: let malloc fail as it
      # would in a run instead of stopping the fuzzer
      opts=(-max_len=16384 -malloc_limit_mb=1048576)
      asan=$ASAN_OPTIONS:allocator_may_return_null=1
      ;;
    *) cp "$here/tests/fuzz/corpus/$t/"* "$work/$t/" ;;
  esac
  echo "fuzz: $t for $seconds s"
  (cd "$here/build-fuzz" && ASAN_OPTIONS=$asan ./fuzz_$t -max_total_time="$seconds" "${opts[@]}" -timeout=10 -print_final_stats=1 "$work/$t" 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|INFO: Running)|ERROR|crash-" || true)
  # libFuzzer exits non-zero on a finding; the pipeline above hides it, so check for a reproducer
  if ls "$here/build-fuzz"/crash-* "$here/build-fuzz"/leak-* "$here/build-fuzz"/timeout-* "$here/build-fuzz"/oom-* > /dev/null 2>&1; then
    echo "fuzz: $t: FAILED, reproducer in build-fuzz/" >&2
    exit 1
  fi
done
echo "fuzz: all targets PASSED"
