#!/usr/bin/env bash
# Install dependencies if missing, configure and build into build/.
#   usage: tools/build.sh [extra cmake -D options]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/tools/install-deps.sh"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release "$@" > /dev/null
cmake --build "$here/build" -j "$(nproc)"
