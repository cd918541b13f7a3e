#!/usr/bin/env bash
# README command 2: build, then run the whole test suite with CTest.
# Test data: ../shared/data beside the project, or APTQ_DATA.
#   usage: tools/run-tests.sh [ctest options]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/install-deps.sh" --tests
"$here/tools/build.sh"
cd "$here/build"
ctest --output-on-failure -j 2 "$@"
