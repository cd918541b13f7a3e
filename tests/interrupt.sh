#!/usr/bin/env bash
# Interrupt an MPI run once a file appears, for the checkpoint tests:
#   interrupt.sh SIGNAL FILE COMMAND...
# SIGNAL: USR1 or TERM (sent to mpirun, which forwards it to the ranks), or
# KILL-RANK (kill -9 of one aptq rank). Prints one line: the signal, the
# command's exit status, and whether it ended within 20 s of the signal;
# exits 1 if the file never appeared, the run succeeded anyway, or it hung.
set -uo pipefail
sig=$1 file=$2
shift 2
"$@" > /dev/null 2>&1 &
pid=$!
for i in $(seq 1 1200); do [ -e "$file" ] && break; kill -0 $pid 2> /dev/null || break; sleep 0.05; done
[ -e "$file" ] || { wait $pid; echo "interrupt: $file never appeared"; exit 1; }
t0=$(date +%s)
case $sig in
  KILL-RANK) victim=$(pgrep -P $pid -x aptq | tail -1); kill -9 "$victim" ;;
  *) kill -"$sig" $pid ;;
esac
for i in $(seq 1 400); do kill -0 $pid 2> /dev/null || break; sleep 0.05; done
if kill -0 $pid 2> /dev/null; then kill -9 $pid; echo "interrupt: $sig: the run hung"; exit 1; fi
wait $pid
rc=$?
dt=$(($(date +%s) - t0))
[ $rc != 0 ] || { echo "interrupt: $sig: the run finished before it was interrupted"; exit 1; }
echo "interrupt $sig: exit status non-zero, ended within 20 s"
