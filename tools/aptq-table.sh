#!/usr/bin/env bash
# GPTQ against each APTQ Hessian form on wt2-llama-s (issue 4,
# docs/aptq.md): for every bit width, per channel and with groups of 32,
# quantize (calibration 128 x 256 tokens of Brown) and measure on the
# WikiText-2 test set (first 100 x 256 tokens)
#   - the attention-output reconstruction error (aptq recon: relative
#     Σ‖o_q − o‖² / Σ‖o‖² over all blocks, full-precision block inputs), and
#   - the perplexity (aptq eval).
# Prints one Markdown table per metric and group setting.
#   usage: tools/aptq-table.sh [RANKS] [BITS...]      (default: 2 ranks, 4 3 2)
#   VARIANTS="name:opt,opt ..." overrides the list below.
set -euo pipefail
ranks=${1:-2}
shift || true
bits_list=${*:-4 3 2}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${APTQ_DATA:-$here/../shared/data}
aptq=${APTQ:-$here/build/aptq}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$ranks" "$aptq" "$@" < /dev/null; }
variants=${VARIANTS:-"gptq:method=gptq
v-kron:method=aptq,v_form=kron,q_form=gptq,k_form=gptq
q-rowshared:method=aptq,v_form=gptq,q_form=rowshared,k_form=gptq
q-kron:method=aptq,v_form=gptq,q_form=kron,k_form=gptq
k-rowshared:method=aptq,v_form=gptq,q_form=gptq,k_form=rowshared
k-kron:method=aptq,v_form=gptq,q_form=gptq,k_form=kron
default(v-kron+q-rs+k-rs):method=aptq
all-kron:method=aptq,v_form=kron,q_form=kron,k_form=kron"}
test_tokens=(--tokens="$data/text/wikitext2-test.llama2.u32" --nseq=100 --seqlen=256)
calib=(--calib="$data/text/brown.llama2.u32" --nseq=128 --seqlen=256)
declare -A att ppl
names=()
while IFS= read -r v; do
  [ -z "$v" ] && continue
  name=${v%%:*}
  names+=("$name")
  opts=()
  IFS=, read -ra kv <<< "${v#*:}"
  for o in "${kv[@]}"; do opts+=("--$o"); done
  for bits in $bits_list; do
    for g in 0 32; do
      run quantize --model="$data/wt2-llama-s" "${opts[@]}" --bits="$bits" --group_size=$g "${calib[@]}" \
        --output="$work/q.h5" --overwrite=yes > /dev/null
      att[$name,$bits,$g]=$(run recon --model="$data/wt2-llama-s" --quantized="$work/q.h5" "${test_tokens[@]}" |
        sed -n 's/^attention relative error: //p')
      ppl[$name,$bits,$g]=$(run eval --model="$data/wt2-llama-s" --quantized="$work/q.h5" "${test_tokens[@]}" |
        sed -n 's/^perplexity: //p')
      echo "# $name bits $bits group $g: attention rel error ${att[$name,$bits,$g]}, perplexity ${ppl[$name,$bits,$g]}" >&2
    done
  done
done <<< "$variants"
for metric in att ppl; do
  for g in 0 32; do
    [ $metric = att ] && what="attention-output relative error" || what="perplexity"
    [ $g = 0 ] && gs="per channel" || gs="groups of $g"
    echo
    echo "$what, $gs"
    echo
    row="| bits |"; rule="|---|"
    for n in "${names[@]}"; do row="$row $n |"; rule="$rule---|"; done
    echo "$row"; echo "$rule"
    for bits in $bits_list; do
      row="| $bits |"
      for n in "${names[@]}"; do
        if [ $metric = att ]; then val=$(printf '%.4e' "${att[$n,$bits,$g]}"); else val=$(printf '%.3f' "${ppl[$n,$bits,$g]}"); fi
        row="$row $val |"
      done
      echo "$row"
    done
  done
done
