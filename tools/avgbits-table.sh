#!/usr/bin/env bash
# avg_bits against uniform widths (issue 16, docs/results.md#mixed-precision-at-equal-bits)
# on wt2-llama-s (or MODEL=stories260K: calibration and evaluation tokens
# sampled from the model itself, seeds 1, 2 (valid) and 3 (test); or
# MODEL=default: the embedded default's model and calibration, 32 x 128,
# made by tools/run-default.sh, evaluated on 100 x 128 tokens sampled with
# seeds 4 (valid) and 5 (test)): APTQ with avg_bits (knapsack over {2, 3, 4, 8} bits, Fisher
# sensitivities by backward passes, one sweep run per group setting) against
# uniform GPTQ and APTQ at 3 bits and APTQ at 2 bits (the uniform widths that
# fit a budget of 3 or 3.5 bits), each calibrated on the first CALIB x 256
# Brown tokens; every file evaluated once (`aptq eval --quantized`) against
# the full-precision model on the first NSEQ x 256 tokens of WikiText-2
# (valid by default: the set choices are made on). Prints Markdown tables:
# per file average bits, perplexity, mean KL divergence ± stderr, top-1
# agreement; per budget the paired difference of mean KLD, mixed − uniform,
# with its standard error over sequences (the per-sequence KLD means of the
# same sequences), and how many of those standard errors it is.
#   usage: tools/avgbits-table.sh [RANKS]   (default 2)
#   AVG="3 3.5" budgets; APTQ_GROUPS="0 32" group sizes; SET=valid|test;
#   NSEQ=100; CALIB=64; MODEL=wt2-llama-s|stories260K; APTQ=path a binary other than build/aptq;
#   WORK=dir keeps the files there and skips the runs whose results exist.
set -euo pipefail
ranks=${1:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${APTQ_DATA:-$here/../shared/data}
aptq=${APTQ:-$here/build/aptq}
avg=${AVG:-3 3.5}
groups=${APTQ_GROUPS:-0 32}
set_=${SET:-valid}
nseq=${NSEQ:-100}
ncalib=${CALIB:-64}
. "$here/tools/table-env.sh"
mname=${MODEL:-wt2-llama-s}
. "$here/tools/table-models.sh"
list=$(echo $avg | tr ' ' ',')
for g in $groups; do
  files=()
  for mb in gptq:3 aptq:3 aptq:2; do
    m=${mb%:*} b=${mb#*:}
    f="$work/$p$m$b-g$g-c$ncalib.h5"
    files+=("$f")
    [ -s "$f" ] && continue
    echo "# quantize $m $b bits, group $g" >&2
    run quantize "${model[@]}" --method=$m --bits="$b" --group_size="$g" "${calib[@]}" --output="$f" --overwrite=yes > /dev/null
  done
  last=${list##*,}
  if [ ! -s "$work/${p}avg-g$g-c$ncalib-b$last.h5" ]; then
    echo "# quantize aptq avg_bits = $list, group $g" >&2
    run quantize "${model[@]}" --method=aptq --avg_bits="$list" --group_size="$g" "${calib[@]}" \
      --output="$work/${p}avg-g$g-c$ncalib.h5" --report="$work/${p}avg-g$g-c$ncalib.json" --overwrite=yes > /dev/null
  fi
  for x in $avg; do files+=("$work/${p}avg-g$g-c$ncalib-b$x.h5"); done
  for f in "${files[@]}"; do
    r="${f%.h5}-$set_-n$nseq.json"
    [ -s "$r" ] && continue
    echo "# eval $(basename "$f") on $set_" >&2
    run eval "${model[@]}" --tokens="$tokens" --nseq="$nseq" --seqlen=$seqlen --quantized="$f" \
      --report="$r" > /dev/null
  done
done
/usr/bin/python3 - "$work" "$avg" "$groups" "$set_" "$nseq" "$ncalib" "$p" "$mname" "$tokdesc" "$calibdesc" <<'PY'
import json, math, sys
work, avg, groups, set_, nseq, nc = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6]
p, mname, tokdesc, calibdesc = sys.argv[7:11]

def load(name):
    return json.load(open(f"{work}/{p}{name}-{set_}-n{nseq}.json"))

def paired(a, b):
    """mean and standard error over sequences of b - a (per-sequence mean KLD)"""
    d = [y - x for x, y in zip(a["kl_divergence_per_sequence"], b["kl_divergence_per_sequence"])]
    n = len(d)
    m = sum(d) / n
    return m, math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1) / n)

for g in groups:
    gs = "per channel" if g == "0" else f"groups of {g}"
    uni = {f"{m.upper()} {b}-bit": (load(f"{m}{b}-g{g}-c{nc}"), int(b)) for m, b in (("gptq", 3), ("aptq", 3), ("aptq", 2))}
    mix = {x: load(f"avg-g{g}-c{nc}-b{x}") for x in avg}
    bits = {x: json.load(open(f"{work}/{p}avg-g{g}-c{nc}-b{x}.json"))["average_bits"] for x in avg}
    r0 = next(iter(mix.values()))
    print(f"\n#### {mname}, {gs}, {tokdesc}, {nseq} x {r0['seqlen']} tokens "
          f"(full precision: perplexity {r0['full_precision_perplexity']:.4f}); calibration {nc} x {r0['seqlen']} {calibdesc}\n")
    print("| model | average code bits | perplexity | mean KLD ± stderr | top-1 agreement |")
    print("|---|---|---|---|---|")
    for name, (r, b) in uni.items():
        print(f"| {name} | {b:.4f} | {r['perplexity']:.4f} | {r['kl_divergence']:.5f} ± {r['kl_divergence_stderr']:.5f} "
              f"| {100 * r['top1_agreement']:.2f} % |")
    for x, r in mix.items():
        print(f"| APTQ avg_bits {x} | {bits[x]:.4f} | {r['perplexity']:.4f} | {r['kl_divergence']:.5f} ± {r['kl_divergence_stderr']:.5f} "
              f"| {100 * r['top1_agreement']:.2f} % |")
    print("\n| budget | against | Δ mean KLD (avg_bits − uniform) ± stderr over sequences | standard errors |")
    print("|---|---|---|---|")
    for x, r in mix.items():
        for name, (u, b) in uni.items():
            if b > float(x):
                continue
            m, se = paired(u, r)
            print(f"| {x} | {name} | {m:+.5f} ± {se:.5f} | {m / se:+.1f} |")
PY
