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
#   NCAL=128 calibration sequences; PAIRS="gptq:aptq rtn:gptq" the
#   (A, B) pairs, each one eval pass, of the methods rtn, gptq, aptq
#   (default forms) and relaxed (aptq with q_form = k_form = v_form =
#   relaxed, BoA/aespa; tools/relaxed-table.sh) and shrinkL (aptq with
#   aptq_shrink = L, e.g. shrink0.25; tools/shrink-table.sh);
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
ncal=${NCAL:-128}
pairs=${PAIRS:-gptq:aptq rtn:gptq}
. "$here/tools/table-env.sh"
model=(--model="$data/wt2-llama-s")
calib=(--calib="$data/text/brown.llama2.u32" --nseq="$ncal" --seqlen=256)
# the files keep the calibration size in their names unless it is the default 128
cal=""; [ "$ncal" != 128 ] && cal="-c$ncal"
# a file's stem: method and width, with a dash where the method ends in a digit (shrink0.25-4)
stem() { case $1 in *[0-9]) echo "$1-$2" ;; *) echo "$1$2" ;; esac; }
methods=$(for p in $pairs; do echo "${p%%:*}"; echo "${p##*:}"; done | awk '!seen[$0]++' | tr '\n' ' ')
for b in $bits; do
  for m in $methods; do
    f="$work/$(stem "$m" "$b")-g$group$cal.h5"
    [ -s "$f" ] && continue
    case $m in
      rtn) args=(--method=rtn) ;;
      gptq | aptq) args=(--method=$m "${calib[@]}") ;;
      relaxed) args=(--method=aptq --q_form=relaxed --k_form=relaxed --v_form=relaxed "${calib[@]}") ;;
      shrink[0-9]*) args=(--method=aptq --aptq_shrink="${m#shrink}" "${calib[@]}") ;;
      *) echo "kld-table.sh: unknown method '$m' in PAIRS; use rtn, gptq, aptq, relaxed or shrinkL" >&2; exit 2 ;;
    esac
    echo "# quantize $m $b bits, group $group" >&2
    run quantize "${model[@]}" "${args[@]}" --bits="$b" --group_size="$group" --output="$f.part" > /dev/null
    mv "$f.part" "$f"
  done
  for pair in $pairs; do
    set -- ${pair%%:*} ${pair##*:}
    r="$work/$(stem "$1" "$b")-$(stem "$2" "$b")-g$group$cal-$set_-n$nseq.json"
    [ -s "$r" ] && continue
    echo "# eval $1 against $2, $b bits" >&2
    run eval "${model[@]}" --tokens="$data/text/wikitext2-$set_.llama2.u32" --nseq="$nseq" --seqlen=256 \
      --quantized="$work/$(stem "$1" "$b")-g$group$cal.h5" --compare="$work/$(stem "$2" "$b")-g$group$cal.h5" --report="$r.part" > /dev/null
    mv "$r.part" "$r"
  done
done
/usr/bin/python3 - "$work" "$bits" "$group" "$set_" "$nseq" "$pairs" "$cal" "$ncal" <<'EOF'
import json, math, sys
work, bits, group, set_, nseq, cal, ncal = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[7], sys.argv[8]
pairs = [tuple(p.split(":")) for p in sys.argv[6].split()]
methods = list(dict.fromkeys(m for p in pairs for m in p))
gs = "per channel" if group == "0" else f"groups of {group}"
reports = {}
stem = lambda m, b: f"{m}-{b}" if m[-1].isdigit() else f"{m}{b}"
for b in bits:
    for a, c in pairs:
        reports[(b, a, c)] = json.load(open(f"{work}/{stem(a, b)}-{stem(c, b)}-g{group}{cal}-{set_}-n{nseq}.json"))

def name(m):
    return m.upper() if m in ("rtn", "gptq", "aptq") else m


def per_seq_se(x, y):
    """Standard error of the mean of the per-sequence differences y - x."""
    d = [q - p for p, q in zip(x, y)]
    n = len(d)
    m = sum(d) / n
    return math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1) / n)

r0 = next(iter(reports.values()))
print(f"\n### wt2-llama-s, {gs}, WikiText-2 {set_}, {nseq} x {r0['seqlen']} tokens, calibration {ncal} x 256 Brown "
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
    for m in methods:
        r = rows[m]
        print(f"| {b} | {name(m)} | {r['perplexity']:.4f} | {r['kl_divergence']:.5f} ± {r['kl_divergence_stderr']:.5f} "
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
    print(f"| {b} | {name(a)} → {name(c)} | {d['kl_divergence']:+.5f} ± {d['kl_divergence_stderr']:.5f} [± {kse:.5f}] "
          f"| {d['perplexity']:+.4f} ± {d['perplexity_stderr']:.4f} [± {pse:.4f}] |")
EOF
