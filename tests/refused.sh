#!/usr/bin/env bash
# One aptq command that must refuse a crafted input (issue 13; the
# tests/cases/bad_crafted_*.case):
#   refused.sh LABEL REGEX ABSENT COMMAND...
# Passes if COMMAND exits non-zero within 60 s (no hang) with exactly one
# "aptq: error" line on stderr, matching the extended regex REGEX, and the
# output ABSENT does not exist afterwards (nothing written). Prints
# "refused LABEL"; otherwise prints why, with the command's stderr, and
# exits 1.
set -uo pipefail
label=$1 regex=$2 absent=$3
shift 3
err=$(mktemp)
timeout 60 "$@" > /dev/null 2> "$err"
rc=$?
lines=$(grep -c '^aptq: error' "$err")
why=""
if [ $rc = 124 ]; then why="did not end within 60 s (hang?)"
elif [ $rc = 0 ]; then why="was accepted (exit status 0)"
elif [ "$lines" != 1 ]; then why="printed $lines 'aptq: error' lines, expected one"
elif ! grep '^aptq: error' "$err" | grep -Eq -- "$regex"; then why="error line does not match '$regex'"
elif [ -e "$absent" ]; then why="left '$absent' behind"
fi
if [ -n "$why" ]; then
  echo "refused.sh: $label: $why"
  cat "$err"
  rm -f "$err"
  exit 1
fi
rm -f "$err"
echo "refused $label"
