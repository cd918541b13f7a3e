#!/bin/bash
# One GGUF file per quantized HDF5 file of a sweep (jobs/sweep-R.sbatch writes
# DIR/model-R<R>.h5, one per R; aptq quantize --R=a,b writes NAME-R<R>.h5):
# each FILE.h5 is exported with `aptq export` to FILE.gguf next to it
# (docs/gguf.md). A file that no ggml type holds exactly (today: a mixed
# R < 1 file, whose 2-bit layers would need llama.cpp's Q2_K) is reported
# with aptq's one-line reason and left without a .gguf; the others are still
# exported.
#   tools/export-sweep.sh MODEL_DIR FILE.h5|DIR ... [-- --key=value ...]
# (a DIR stands for its *.h5; the options after -- go to aptq export, e.g.
# --tokenizer=PATH, --overwrite=yes). Environment: APTQ (default build/aptq),
# APTQ_LAUNCHER (mpirun or srun, default mpirun; the export runs on 1 rank).
# Exit status: 0 when every file was exported, 1 when any was refused or
# failed, 2 on a usage error. Prints one line per file.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: tools/export-sweep.sh MODEL_DIR FILE.h5|DIR ... [-- --key=value ...]" >&2; exit 2; }
model=$1
shift
files=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    if [ -d "$1" ]; then
        for f in "$1"/*.h5; do [ -e "$f" ] && files+=("$f"); done
    else
        files+=("$1")
    fi
    shift
done
[ "${1:-}" = -- ] && shift
[ ${#files[@]} -gt 0 ] || { echo "export-sweep: no .h5 files given (or none in the directories)" >&2; exit 2; }
aptq=${APTQ:-build/aptq}
if [ "${APTQ_LAUNCHER:-mpirun}" = srun ]; then launch=(srun -n 1 --mpi=pmix "$aptq"); else launch=(mpirun -n 1 "$aptq"); fi
ok=0 bad=0
for f in "${files[@]}"; do
    out=${f%.h5}.gguf
    if msg=$("${launch[@]}" export --model="$model" --quantized="$f" --output="$out" "$@" 2>&1); then
        echo "export-sweep: $f -> $out ($(echo "$msg" | sed -n 's/^aptq export: GGUF v3, [0-9]* tensors, [^;]*; linear layers: //p'))"
        ok=$((ok + 1))
    else
        echo "export-sweep: $f not exported: $(echo "$msg" | grep -m1 'error' || echo "$msg" | tail -1)"
        bad=$((bad + 1))
    fi
done
echo "export-sweep: $ok of $((ok + bad)) files exported"
[ $bad = 0 ]
