#!/usr/bin/env bash
# KL divergence table (issue 16, docs/results.md#kl-divergence) on
# wt2-llama-s: RTN, GPTQ and APTQ (default forms) at the given widths and
# group size, GPTQ and APTQ calibrated on the first 128 x 256 Brown tokens;
# each pair (GPTQ, APTQ) and (RTN, GPTQ) evaluated in one `aptq eval
# --quantized=A --compare=B` pass against the full-precision model on the
# first NSEQ x 256 tokens of WikiText-2 (valid by default: the set methods
# are chosen on). Prints Markdown tables: per file perplexity, mean KL
# divergence ± stderr, p99, top-1 agreement; per pair the paired
# differences B - A with llama.cpp's per-prediction standard error and the
# more conservative one over sequences (per-sequence means).
#   usage: tools/kld-table.sh [RANKS]   (default 2)
#   BITS="4 3" widths; GROUP=0 group size; SET=valid|test; NSEQ=100;
#   APTQ=path a binary other than build/aptq; WORK=dir keeps the files
#   there and skips the runs whose results exist (a rerun continues).
set -euo pipefail
ranks=${1:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${APTQ_DATA:-$here/../shared/data}
aptq=${APTQ:-$here/build/aptq}
bits=${BITS:-4 3}
group=${GROUP:-0}
set_=${SET:-valid}
nseq=${NSEQ:-100}
if [ -n "${WORK:-}" ]; then
  work=$WORK
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$ranks" "$aptq" "$@" < /dev/null; }
model=(--model="$data/wt2-llama-s")
calib=(--calib="$data/text/brown.llama2.u32" --nseq=128 --seqlen=256)
for b in $bits; do
  for m in rtn gptq aptq; do
    f="$work/$m$b-g$group.h5"
    [ -s "$f" ] && continue
    extra=(); [ "$m" != rtn ] && extra=("${calib[@]}")
    echo "# quantize $m $b bits, group $group" >&2
    run quantize "${model[@]}" --method=$m --bits="$b" --group_size="$group" "${extra[@]}" --output="$f" > /dev/null
  done
  for pair in "gptq aptq" "rtn gptq"; do
    set -- $pair
    r="$work/$1$b-$2$b-g$group-$set_-n$nseq.json"
    [ -s "$r" ] && continue
    echo "# eval $1 against $2, $b bits" >&2
    run eval "${model[@]}" --tokens="$data/text/wikitext2-$set_.llama2.u32" --nseq="$nseq" --seqlen=256 \
      --quantized="$work/$1$b-g$group.h5" --compare="$work/$2$b-g$group.h5" --report="$r" > /dev/null
  done
done
/usr/bin/python3 - "$work" "$bits" "$group" "$set_" "$nseq" <<'EOF'
import json, math, sys
work, bits, group, set_, nseq = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5]
gs = "per channel" if group == "0" else f"groups of {group}"
reports = {}
for b in bits:
    for a, c in (("gptq", "aptq"), ("rtn", "gptq")):
        reports[(b, a, c)] = json.load(open(f"{work}/{a}{b}-{c}{b}-g{group}-{set_}-n{nseq}.json"))

def per_seq_se(x, y):
    """Standard error of the mean of the per-sequence differences y - x."""
    d = [q - p for p, q in zip(x, y)]
    n = len(d)
    m = sum(d) / n
    return math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1) / n)

r0 = next(iter(reports.values()))
print(f"\n### wt2-llama-s, {gs}, WikiText-2 {set_}, {nseq} x {r0['seqlen']} tokens "
      f"(full precision: perplexity {r0['full_precision_perplexity']:.4f})\n")
print("| bits | method | perplexity | mean KLD ± stderr | KLD p99 | top-1 agreement |")
print("|---|---|---|---|---|---|")
for b in bits:
    rows = {}
    for (bb, a, c), r in reports.items():
        if bb != b:
            continue
        rows[a] = r
        rows[c] = r["compare"]
    for m in ("rtn", "gptq", "aptq"):
        r = rows[m]
        print(f"| {b} | {m.upper()} | {r['perplexity']:.4f} | {r['kl_divergence']:.5f} ± {r['kl_divergence_stderr']:.5f} "
              f"| {r['kl_divergence_p99']:.4f} | {100 * r['top1_agreement']:.2f} ± {100 * r['top1_agreement_stderr']:.2f} % |")
print("\nPaired differences B − A on the same predictions (± per-prediction stderr as llama.cpp; [± over sequences]):\n")
print("| bits | A → B | Δ mean KLD | Δ perplexity |")
print("|---|---|---|---|")
for (b, a, c), r in reports.items():
    d = r["difference"]
    nll_a = [x / (r["seqlen"] - 1) for x in r["nll_per_sequence"]]
    nll_c = [x / (r["seqlen"] - 1) for x in r["compare"]["nll_per_sequence"]]
    kse = per_seq_se(r["kl_divergence_per_sequence"], r["compare"]["kl_divergence_per_sequence"])
    pse = r["compare"]["perplexity"] * per_seq_se(nll_a, nll_c)
    print(f"| {b} | {a.upper()} → {c.upper()} | {d['kl_divergence']:+.5f} ± {d['kl_divergence_stderr']:.5f} [± {kse:.5f}] "
          f"| {d['perplexity']:+.4f} ± {d['perplexity_stderr']:.4f} [± {pse:.4f}] |")
EOF
