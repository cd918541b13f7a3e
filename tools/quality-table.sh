#!/usr/bin/env bash
# Every method at equal bits on one model (issue 16,
# docs/results.md#every-method-per-model): one command per model builds its
# whole table. Per group setting (per channel, groups of 32):
#   - uniform rows at 4, 3 and 2 bits: RTN, GPTQ, APTQ's default forms (q, k
#     rowshared, v kron), APTQ with q, k kron, APTQ on v only (q, k gptq
#     form), the relaxed BoA/aespa form (q, k, v relaxed);
#   - mixed rows at 3.0 and 3.5 average code bits: avg_bits (knapsack over
#     Fisher sensitivities, the recommended mode), R at the same average
#     bits (R = (budget - 2) / 2 in 2/4 bits: 0.5 and 0.75) with the default
#     allocation (trace of the Fisher sensitivities), with
#     allocation = knapsack, and with the layers' own Hessian traces
#     (sensitivity = layer, the APTQ paper's ranking).
# Calibration and evaluation tokens exactly as tools/avgbits-table.sh
# (tools/table-models.sh): wt2-llama-s 64 x 256 Brown, WikiText-2 SET;
# stories260K tokens sampled from the model (calibration seed 1, valid 2,
# test 3); default the embedded default's 32 x 128 calibration and tokens
# sampled with seeds 4 (valid), 5 (test). Every file is evaluated once
# (`aptq eval --quantized`) against the full-precision model on the same
# NSEQ sequences; tools/quality_table.py prints the Markdown tables: average
# code bits, perplexity, mean KLD ± stderr, top-1 agreement, and Δ mean KLD
# against GPTQ at the same width (a mixed row: at the widest uniform width
# that fits its budget), paired over sequences, ± its standard error over
# sequences; then every mixed row against the best uniform row that fits.
#   usage: tools/quality-table.sh MODEL [RANKS]
#     MODEL = wt2-llama-s | stories260K | default (default: run
#     tools/run-default.sh first); RANKS default 2.
#   SET=valid|test (default valid: the set choices are made on; test once);
#   NSEQ=100 evaluation sequences; CALIB=64 calibration sequences (default:
#   always 32); BITS="4 3 2"; AVG="3 3.5" budgets; APTQ_GROUPS="0 32";
#   ROWS: the row list, one row a line "key|label|kind|options": kind u =
#   uniform (run at every width of BITS with --bits), avg = avg_bits (one
#   sweep over AVG), R = R (one sweep over the R of each budget); options
#   are quantize options (the calibration is added); the key names files
#   and "gptq" is the Δ reference. APTQ=path a binary other than
#   build/aptq; WORK=dir keeps the files there: a rerun (or the other SET)
#   only runs what is missing.
set -euo pipefail
mname=${1:?usage: tools/quality-table.sh wt2-llama-s|stories260K|default [RANKS]}
ranks=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${APTQ_DATA:-$here/../shared/data}
aptq=${APTQ:-$here/build/aptq}
bits=${BITS:-4 3 2}
avg=${AVG:-3 3.5}
groups=${APTQ_GROUPS:-0 32}
set_=${SET:-valid}
nseq=${NSEQ:-100}
ncalib=${CALIB:-64}
aptq_forms="--method=aptq --q_form=rowshared --k_form=rowshared --v_form=kron"
rows=${ROWS:-"rtn|RTN|u|--method=rtn
gptq|GPTQ|u|--method=gptq
aptq|APTQ (q, k rowshared; v kron)|u|$aptq_forms
aptq-kron|APTQ (q, k, v kron)|u|--method=aptq --q_form=kron --k_form=kron --v_form=kron
aptq-v|APTQ v only (q, k gptq; v kron)|u|--method=aptq --q_form=gptq --k_form=gptq --v_form=kron
relaxed|relaxed (q, k, v relaxed)|u|--method=aptq --q_form=relaxed --k_form=relaxed --v_form=relaxed
avg|avg_bits (knapsack, Fisher)|avg|$aptq_forms
rtrace|R = {R}, trace (Fisher)|R|$aptq_forms --allocation=trace --sensitivity=fisher
rknap|R = {R}, knapsack (Fisher)|R|$aptq_forms --allocation=knapsack --sensitivity=fisher
rlayer|R = {R}, trace (layer Hessians, the paper's)|R|$aptq_forms --allocation=trace --sensitivity=layer"}
. "$here/tools/table-env.sh"
. "$here/tools/table-models.sh"
rof() { awk -v x="$1" 'BEGIN { printf "%g", (x - 2) / 2 }'; }
t=$'\t'
manifest=$work/${p}quality-$set_-n$nseq.tsv
: > "$manifest.part"
# eval FILE.h5 once on the set; append the manifest line "group kind width key label"
row() {
  local f=$1 q=$2 r="${1%.h5}-$set_-n$nseq.json"
  if [ ! -s "$r" ]; then
    echo "# eval $(basename "$f") on $set_" >&2
    run eval "${model[@]}" --tokens="$tokens" --nseq="$nseq" --seqlen=$seqlen --quantized="$f" --report="$r" > /dev/null
  fi
  printf '%s\t%s\t%s\n' "$3" "$q" "$r" >> "$manifest.part"
}
for g in $groups; do
  while IFS='|' read -r key label kind opts; do
    [ -z "$key" ] && continue
    read -ra o <<< "$opts"
    case $kind in
      u)
        for b in $bits; do
          f="$work/$p$key$b-g$g-c$ncalib.h5"
          if [ ! -s "${f%.h5}.json" ]; then
            echo "# quantize $key $b bits, group $g" >&2
            run quantize "${model[@]}" "${o[@]}" --bits="$b" --group_size="$g" "${calib[@]}" \
              --output="$f" --report="${f%.h5}.json" --overwrite=yes > /dev/null
          fi
          row "$f" "${f%.h5}.json" "$g${t}u$t$b$t$key$t$label"
        done ;;
      avg | R)
        vals=()
        for x in $avg; do [ "$kind" = R ] && vals+=("$(rof "$x")") || vals+=("$x"); done
        s=b; [ "$kind" = R ] && s=R
        base="$work/$p$key-g$g-c$ncalib"
        missing=no
        for v in "${vals[@]}"; do [ -s "$base-$s$v.json" ] || missing=yes; done
        if [ $missing = yes ]; then
          list=$(IFS=,; echo "${vals[*]}")
          echo "# quantize $key $s = $list, group $g" >&2
          if [ "$kind" = R ]; then sweep=(--R="$list"); else sweep=(--avg_bits="$list"); fi
          run quantize "${model[@]}" "${o[@]}" "${sweep[@]}" --group_size="$g" "${calib[@]}" \
            --output="$base.h5" --report="$base.json" --overwrite=yes > /dev/null
        fi
        i=0
        for x in $avg; do
          v=${vals[$i]}; i=$((i + 1))
          row "$base-$s$v.h5" "$base-$s$v.json" "$g${t}m$t$x$t$key$t${label//\{R\}/$v}"
        done ;;
      *) echo "quality-table.sh: row '$key' has kind '$kind'; use u, avg or R" >&2; exit 2 ;;
    esac
  done <<< "$rows"
done
mv "$manifest.part" "$manifest"
/usr/bin/python3 "$here/tools/quality_table.py" "$manifest" "$mname" "$tokdesc" "$ncalib x $seqlen $calibdesc"
