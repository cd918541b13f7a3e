#!/usr/bin/env bash
# README command 1: build, then run the main job on the embedded default.
# The project ships no weights, so aptq makes a small LLaMA-architecture
# checkpoint (Hugging Face layout, seeded) and samples calibration and
# evaluation tokens from it; then it quantizes with input/default.deck and
# evaluates the full-precision and the quantized model.
#   usage: tools/run-default.sh [RANKS]   (default 2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ranks=${1:-2}
"$here/tools/build.sh"
cd "$here"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
mpi=(mpirun --oversubscribe -n "$ranks" build/aptq)
mkdir -p build/default
"${mpi[@]}" synth --output=build/default/model --overwrite=yes
"${mpi[@]}" generate --model=build/default/model --nseq=32 --seqlen=128 --seed=1 --output=build/default/calib.u32 --overwrite=yes
"${mpi[@]}" generate --model=build/default/model --nseq=16 --seqlen=128 --seed=2 --output=build/default/eval.u32 --overwrite=yes
"${mpi[@]}" quantize input/default.deck
"${mpi[@]}" eval --model=build/default/model --tokens=build/default/eval.u32 --nseq=16 --seqlen=128 --report=build/default/eval-fp.json
"${mpi[@]}" eval --model=build/default/model --tokens=build/default/eval.u32 --nseq=16 --seqlen=128 \
  --quantized=build/default/model-aptq.h5 --report=build/default/eval-aptq.json
echo "default job done: build/default/model-aptq.h5 (report build/default/quantize.json)"
