#!/usr/bin/env bash
# The shrinkage table (aptq_shrink, docs/results.md#shrinkage-toward-gptq)
# on wt2-llama-s: GPTQ and APTQ (default forms) with aptq_shrink = each of
# LAMBDAS at 4, 3 and 2 bits, per channel and groups of 32 (no act-order, as
# tools/relaxed-table.sh), calibrated on the first 64 x 256 Brown tokens;
# KL divergence on the first NSEQ x 256 tokens of WikiText-2 SET. The files
# are evaluated two per pass (tools/kld-table.sh: GPTQ with the first
# lambda, then the others in pairs, the last with GPTQ if they are odd);
# every file's per-sequence KL divergences are on the same sequences, so
# each lambda is compared with GPTQ (and with lambda = 0) by the paired
# per-sequence differences, ± their standard error over sequences.
#   usage: tools/shrink-table.sh [RANKS]   (default 2)
#   LAMBDAS="0 0.25 0.5" (the first is the reference APTQ row);
#   SET=valid|test (default valid: lambda is chosen there; test once);
#   NSEQ=100; WORK=dir keeps the files and reports (default a temporary
#   directory): a second SET reuses the files, a rerun continues.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ranks=${1:-2}
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
lambdas=(${LAMBDAS:-0 0.25 0.5})
pairs="gptq:shrink${lambdas[0]}"
rest=("${lambdas[@]:1}")
for ((i = 0; i < ${#rest[@]}; i += 2)); do
  if ((i + 1 < ${#rest[@]})); then pairs="$pairs shrink${rest[i]}:shrink${rest[i + 1]}"
  else pairs="$pairs gptq:shrink${rest[i]}"; fi
done
export WORK BITS="4 3 2" NCAL=64 PAIRS="$pairs" SET=${SET:-valid} NSEQ=${NSEQ:-100}
for g in 0 32; do
  GROUP=$g "$here/kld-table.sh" "$ranks" > /dev/null
done
/usr/bin/python3 - "$WORK" "$SET" "$NSEQ" "$pairs" "${lambdas[*]}" <<'PY'
import json, math, sys
work, set_, nseq, pairs, lambdas = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5].split()
stem = lambda m, b: f"{m}-{b}" if m[-1].isdigit() else f"{m}{b}"

def files(b, g):
    """Every method's report entry (perplexity, KLD, per-sequence KLD) at width b, group g."""
    out = {}
    for p in pairs:
        a, c = p.split(":")
        r = json.load(open(f"{work}/{stem(a, b)}-{stem(c, b)}-g{g}-c64-{set_}-n{nseq}.json"))
        out[a], out[c] = r, r["compare"]
    return out

def paired(x, y):
    """Mean of the per-sequence differences y - x and its standard error over sequences."""
    d = [q - p for p, q in zip(x, y)]
    n = len(d)
    m = sum(d) / n
    return m, math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1) / n)

ref = "shrink" + lambdas[0]
print(f"\n#### wt2-llama-s, WikiText-2 {set_}, {nseq} x 256 tokens, calibration 64 x 256 Brown\n")
print(f"Mean KL divergence; Δ = APTQ(λ) − GPTQ and APTQ(λ) − APTQ(λ = {lambdas[0]}), per-sequence paired, ± standard error over sequences.\n")
print("| bits | groups | GPTQ | λ | APTQ(λ) | Δ vs GPTQ | Δ vs λ = " + lambdas[0] + " | perplexity GPTQ / APTQ(λ) |")
print("|---|---|---|---|---|---|---|---|")
for g in (0, 32):
    for b in (4, 3, 2):
        f = files(b, g)
        gp = f["gptq"]
        for lam in lambdas:
            r = f["shrink" + lam]
            dg, sg = paired(gp["kl_divergence_per_sequence"], r["kl_divergence_per_sequence"])
            dr, sr = paired(f[ref]["kl_divergence_per_sequence"], r["kl_divergence_per_sequence"])
            gs = "per channel" if g == 0 else f"{g}"
            print(f"| {b} | {gs} | {gp['kl_divergence']:.5f} | {lam} | {r['kl_divergence']:.5f} | {dg:+.5f} ± {sg:.5f} "
                  f"| {dr:+.5f} ± {sr:.5f} | {gp['perplexity']:.4f} / {r['perplexity']:.4f} |")
PY
