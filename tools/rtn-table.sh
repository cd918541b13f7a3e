#!/usr/bin/env bash
# Perplexity table of RTN on wt2-llama-s (WikiText-2 test, first 100 x 256
# tokens, non-overlapping, stride 256): FP and 8/4/3/2 bits, per channel and
# groups of 32. Prints a Markdown table (docs/results.md holds its output).
#   usage: tools/rtn-table.sh [RANKS] [DATA]
set -euo pipefail
ranks=${1:-2}
data=${2:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
here=$(cd "$(dirname "$0")/.." && pwd)
aptq="$here/build/aptq"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$ranks" "$aptq" "$@"; }
evalargs=(--model="$data/wt2-llama-s" --tokens="$data/text/wikitext2-test.llama2.u32" --nseq=100 --seqlen=256)
ppl() { run eval "${evalargs[@]}" "$@" | sed -n 's/^perplexity: //p'; }
echo "| bits | per channel | group 32 |"
echo "|---|---|---|"
echo "| 16 (bf16 weights, fp32 compute) | $(ppl) | |"
for bits in 8 4 3 2; do
  row="| $bits |"
  for g in 0 32; do
    run quantize --model="$data/wt2-llama-s" --method=rtn --bits=$bits --group_size=$g --output="$work/q.h5" --overwrite=yes > /dev/null
    row="$row $(ppl --quantized="$work/q.h5") |"
  done
  echo "$row"
done
