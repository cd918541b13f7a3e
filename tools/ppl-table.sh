#!/usr/bin/env bash
# Perplexity table on wt2-llama-s (WikiText-2 test, first 100 x 256 tokens,
# non-overlapping, stride 256): full precision, then each method at the
# given bit widths, per channel and with groups of 32. GPTQ and APTQ
# calibrate on 128 x 256 tokens of Brown. Prints a Markdown table
# (docs/results.md).
#   usage: [METHODS="rtn gptq aptq"] tools/ppl-table.sh [RANKS] [BITS...]
#   (default: rtn gptq, 2 ranks, bits 8 4 3 2)
set -euo pipefail
ranks=${1:-2}
shift || true
bits_list=${*:-8 4 3 2}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${APTQ_DATA:-$here/../shared/data}
aptq="$here/build/aptq"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$ranks" "$aptq" "$@"; }
ppl() {
  run eval --model="$data/wt2-llama-s" --tokens="$data/text/wikitext2-test.llama2.u32" --nseq=100 --seqlen=256 "$@" |
    sed -n 's/^perplexity: //p'
}
methods=${METHODS:-rtn gptq}
calib=(--calib="$data/text/brown.llama2.u32" --nseq=128 --seqlen=256)
head="| bits |"; rule="|---|"
for g in "per channel" "group 32"; do for method in $methods; do head="$head ${method^^} $g |"; rule="$rule---|"; done; done
echo "$head"; echo "$rule"
echo "| 16 (bf16 weights, fp32 compute) | $(ppl) |"
for bits in $bits_list; do
  row="| $bits |"
  for g in 0 32; do
    for method in $methods; do
      extra=()
      [ "$method" != rtn ] && extra=("${calib[@]}")
      run quantize --model="$data/wt2-llama-s" --method=$method --bits="$bits" --group_size=$g "${extra[@]}" \
        --output="$work/q.h5" --overwrite=yes > /dev/null
      row="$row $(ppl --quantized="$work/q.h5") |"
    done
  done
  echo "$row"
done
