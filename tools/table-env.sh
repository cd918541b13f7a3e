# Sourced by the table tools (tools/*-table.sh) after they set $ranks and
# $aptq: the work directory ($WORK, kept; else a temporary one removed at
# exit), the MPI environment for root, and run() = aptq on $ranks ranks.
if [ -n "${WORK:-}" ]; then
  work=$WORK
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$ranks" "$aptq" "$@" < /dev/null; }
