#!/usr/bin/env bash
# SIGUSR1 to an MPI run once a path matching GLOB exists (e.g. the
# temporary checkpoint file of the last block, created when that block
# starts):  signal_late.sh GLOB COMMAND...
# Prints one line: the command's exit status; exits 1 if no such path ever
# appeared or the run hung.
set -uo pipefail
glob=$1
shift
"$@" > /dev/null 2>&1 &
pid=$!
found=
for i in $(seq 1 2400); do
  compgen -G "$glob" > /dev/null && { found=1; break; }
  kill -0 $pid 2> /dev/null || break
  sleep 0.025
done
[ -n "$found" ] || { wait $pid; echo "signal_late: $glob never appeared"; exit 1; }
kill -USR1 $pid
for i in $(seq 1 1200); do kill -0 $pid 2> /dev/null || break; sleep 0.05; done
if kill -0 $pid 2> /dev/null; then kill -9 $pid; echo "signal_late: the run hung"; exit 1; fi
wait $pid
echo "SIGUSR1 during the last block: exit status $?"
