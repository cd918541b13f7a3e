#!/usr/bin/env bash
# A full device (issue 13): aptq quantize writing into a 1 MiB tmpfs must
# fail with "no space left on device writing output '...'; free space or
# choose another output" (it said "HDF5 failed to qweight"), exit non-zero
# and leave nothing there. Needs root and mount -t tmpfs (exit 77: skipped,
# as in a container without CAP_SYS_ADMIN; prlimit --fsize is no substitute:
# Open MPI's shared-memory files hit the limit first).
#   disk_full.sh APTQ DATA_DIR MPIEXEC
set -uo pipefail
aptq=$1 data=$2 mpiexec=$3
dir=$(mktemp -d /tmp/aptq-disk-full-XXXXXX)
trap 'umount "$dir" 2> /dev/null; rmdir "$dir"' EXIT
if ! mount -t tmpfs -o size=1m tmpfs "$dir" 2> /dev/null; then
  echo "disk_full: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN); skipped"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
err=$("$mpiexec" --oversubscribe -n 2 "$aptq" quantize --model="$data/wt2-llama-s" --method=rtn --bits=4 \
  --output="$dir/o.h5" 2>&1 > /dev/null)
rc=$?
want="no space left on device writing output '$dir/o.h5'; free space or choose another output"
fail=0
[ $rc != 0 ] || { echo "disk_full: the run succeeded on a full device"; fail=1; }
grep -qF "$want" <<< "$err" || { echo "disk_full: no '$want' in:"; echo "$err" | head -5; fail=1; }
left=$(ls -A "$dir")
[ -z "$left" ] || { echo "disk_full: left behind: $left"; fail=1; }
[ $fail = 0 ] && echo "disk_full: refused with '$want', nothing left"
exit $fail
