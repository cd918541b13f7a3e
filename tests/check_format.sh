#!/usr/bin/env bash
# The C sources follow the committed .clang-format (clang-format 14, Debian
# 12's): prints each file that does not, and fails. Fix with
#   clang-format -i $(git ls-files '*.c' '*.h')
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fmt=$(command -v clang-format-14 || command -v clang-format) || { echo "clang-format not found (tools/install-deps.sh --tests)"; exit 1; }
bad=0
for f in src/*.[ch] tests/*.[ch] tests/fuzz/*.[ch] tools/*.c; do
  if ! "$fmt" --dry-run --Werror "$f" > /dev/null 2>&1; then
    echo "not formatted: $f"
    bad=1
  fi
done
[ $bad = 0 ] && echo "all C sources follow .clang-format"
exit $bad
