#!/usr/bin/env bash
# The test suite under AddressSanitizer + UBSan (CMake option APTQ_SANITIZE,
# build-asan/): any out-of-bounds access, use after free or undefined
# behaviour aborts the test that hit it. Leak checking is off: Open MPI and
# its plugins keep allocations until exit that LeakSanitizer cannot attribute.
#   usage: tools/run-sanitized.sh [ctest options]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/install-deps.sh" --tests
# Release flags (-O3, -march=native) as the main build, so that the reference outputs match to their tolerances
cmake -S "$here" -B "$here/build-asan" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-g -DAPTQ_SANITIZE=ON > /dev/null
cmake --build "$here/build-asan" -j "$(nproc)"
cd "$here/build-asan"
export APTQ_SANITIZED=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# the "heavy" rank variants repeat what another rank count checks (tests/harness.py)
ctest --output-on-failure -j 2 -LE heavy "$@"
