#!/usr/bin/env bash
# Scaling study (issue 6, docs/scaling.md) with `aptq bench`: strong scaling
# (one synthetic block, a fixed calibration set, at each rank count) and weak
# scaling (calibration sequences growing with the ranks). Prints per-phase
# tables (seconds, speedup and efficiency per phase), the Hessian kernel
# against SGEMM and the memory per rank, and draws PNG plots (gnuplot).
#   usage: tools/scaling.sh [RANKS...]            (default: 1 2)
# Environment (defaults in brackets):
#   SHAPE [7b]  NSEQ [8] strong-scaling sequences  SEQLEN [2048]
#   WEAK [4] sequences per rank for weak scaling (0: skip)  BLOCKS [1]
#   APTQ_ARGS   more options for every run (e.g. "--method=aptq"); a --shape, --blocks or
#               --seqlen there replaces the one from the environment (aptq refuses a key
#               given twice); --nseq is set per run (NSEQ, WEAK) and refused there
#   OUT [scaling-out] where reports, tables and plots go (a rerun reuses existing reports)
#   PNG [$OUT/scaling] prefix of the plots
#   LAUNCH ["mpirun --oversubscribe -n"] the launcher, given the rank count (Slurm: "srun --mpi=pmix -n")
#   APTQ [build/aptq]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(1 2)
shape=${SHAPE:-7b} nseq=${NSEQ:-8} seqlen=${SEQLEN:-2048} weak=${WEAK:-4} blocks=${BLOCKS:-1}
out=${OUT:-scaling-out}
png=${PNG:-$out/scaling}
aptq=${APTQ:-$here/build/aptq}
launch=${LAUNCH:-mpirun --oversubscribe -n}
given() { [[ " ${APTQ_ARGS:-} " == *" --$1="* ]]; }
if given nseq; then
  echo "scaling.sh: --nseq in APTQ_ARGS: each run sets it; use NSEQ (strong) and WEAK (per rank)" >&2
  exit 1
fi
own=()
for kv in "shape=$shape" "blocks=$blocks" "seqlen=$seqlen"; do given "${kv%%=*}" || own+=("--$kv"); done
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
bench() { # name ranks nseq
  local json="$out/$1-np$2.json"
  [ -s "$json" ] && return 0
  echo "# $1: $2 ranks, $3 sequences; ${own[*]} ${APTQ_ARGS:-}" >&2
  # shellcheck disable=SC2086
  $launch "$2" "$aptq" bench "${own[@]}" --nseq="$3" ${APTQ_ARGS:-} \
    --output="$out/$1-np$2.h5" --overwrite=yes --report="$json" > "$out/$1-np$2.log" < /dev/null
  rm -f "$out/$1-np$2.h5"
}
for p in "${ranks[@]}"; do bench strong "$p" "$nseq"; done
if [ "$weak" -gt 0 ]; then
  for p in "${ranks[@]}"; do bench weak "$p" $((weak * p)); done
fi
python3 "$here/tools/scaling_table.py" "$out" "$png" "${ranks[@]}"
