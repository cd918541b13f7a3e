#!/usr/bin/env bash
# The two Fisher estimators (fisher_method = probes | backward, docs/mixed.md)
# compared on wt2-llama-s: time of the estimate against one quantization
# pass, and the allocation and WikiText-2 perplexity they lead to (APTQ,
# R = 0.5, trace and knapsack, per channel; calibration 128 x 256 Brown,
# fisher_nseq 16, one probe / label set; perplexity on the first 100 x 256
# tokens of WikiText-2 test). Then the cost at depth: the same on a 32-block
# model of wt2-llama-s's shape (its blocks repeated, tools/deepen_model.py)
# at the defaults' ratio of Fisher sequences to calibration sequences (1/8)
# with a quarter of both (4 of 32: every cost is proportional to its
# sequences), probes measured with fisher_nseq = 2 and scaled to 4.
#   usage: tools/fisher-methods.sh [RANKS]   (default 2); WORK=dir keeps the files and skips runs whose results exist;
#   ALLOCS="trace knapsack" chooses the allocations
set -euo pipefail
ranks=${1:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${APTQ_DATA:-$here/../shared/data}
aptq=${APTQ:-$here/build/aptq}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
run() { mpirun --oversubscribe -n "$ranks" "$aptq" "$@" < /dev/null > /dev/null; }
calib=(--method=aptq --calib="$data/text/brown.llama2.u32" --nseq=128 --seqlen=256 --R=0.5 --overwrite=yes)
evalargs=(--model="$data/wt2-llama-s" --tokens="$data/text/wikitext2-test.llama2.u32" --nseq=100 --seqlen=256 --overwrite=yes)
for alloc in ${ALLOCS:-trace knapsack}; do
  for m in probes backward; do
    [ -s "$work/eval-$alloc-$m.json" ] && continue
    echo "# wt2-llama-s $alloc $m" >&2
    [ -s "$work/$alloc-$m-R0.5.json" ] || run quantize --model="$data/wt2-llama-s" "${calib[@]}" --allocation=$alloc --fisher_method=$m \
      --output="$work/$alloc-$m-R0.5.h5" --report="$work/$alloc-$m-R0.5.json"
    run eval "${evalargs[@]}" --quantized="$work/$alloc-$m-R0.5.h5" --report="$work/eval-$alloc-$m.json"
  done
done
deep=$work/wt2x32
[ -s "$deep/config.json" ] || /usr/bin/python3 "$here/tools/deepen_model.py" "$data/wt2-llama-s" 32 "$deep" > /dev/null
for m in backward probes; do
  n=4; [ $m = probes ] && n=2
  [ -s "$work/deep-$m-R0.5.json" ] && continue
  echo "# 32 blocks $m fisher_nseq=$n" >&2
  run quantize --model="$deep" "${calib[@]}" --nseq=32 --fisher_method=$m --fisher_nseq=$n --output="$work/deep-$m-R0.5.h5" --report="$work/deep-$m-R0.5.json"
done
/usr/bin/python3 - "$work" ${ALLOCS:-trace knapsack} <<'PY'
import json, math, sys
w = sys.argv[1]
J = lambda n: json.load(open("%s/%s.json" % (w, n)))
def spearman(a, b):
    ra = {i: r for r, i in enumerate(sorted(range(len(a)), key=lambda i: a[i]))}
    rb = {i: r for r, i in enumerate(sorted(range(len(b)), key=lambda i: b[i]))}
    n = len(a)
    return 1 - 6 * sum((ra[i] - rb[i]) ** 2 for i in range(n)) / (n * (n * n - 1))
print("| model | allocation | fisher_method | Fisher s | pass s | Fisher / pass | R achieved | perplexity |")
print("|---|---|---|---|---|---|---|---|")
for alloc in sys.argv[2:]:
    reps = {}
    for m in ("probes", "backward"):
        q = J("%s-%s-R0.5" % (alloc, m)); e = J("eval-%s-%s" % (alloc, m)); reps[m] = (q, e)
        f, p = q["phase_seconds"]["fisher_sensitivity"], q["phase_seconds"]["quantize_write"]
        print("| wt2-llama-s (4 blocks) | %s | %s | %.1f | %.1f | %.2f | %.4f | %.3f |" % (alloc, m, f, p, f / p, q["R_achieved"], e["perplexity"]))
    (qa, ea), (qb, eb) = reps["probes"], reps["backward"]
    d = [x - y for x, y in zip(eb["nll_per_sequence"], ea["nll_per_sequence"])]
    T = 255.0  # predicted tokens per sequence
    diff = eb["perplexity"] - ea["perplexity"]
    se = eb["perplexity"] * math.sqrt(sum((x - sum(d) / len(d)) ** 2 for x in d) / (len(d) - 1) / len(d)) / T
    bits_a = [l["bits"] for l in qa["layers"]]; bits_b = [l["bits"] for l in qb["layers"]]
    sa = [l["allocation_sensitivity"] for l in qa["layers"]]; sb = [l["allocation_sensitivity"] for l in qb["layers"]]
    print("|  | %s | backward − probes | | | | %d of %d layers at another width | %+.3f ± %.3f (paired SE); sensitivities' rank correlation %.3f |"
          % (alloc, sum(x != y for x, y in zip(bits_a, bits_b)), len(bits_a), diff, se, spearman(sa, sb)))
for m, n in (("backward", 4), ("probes", 2)):
    q = J("deep-%s-R0.5" % m)
    f, p = q["phase_seconds"]["fisher_sensitivity"], q["phase_seconds"]["quantize_write"]
    scale = 4 / n
    print("| 32 blocks (wt2-llama-s's repeated), 4 of 32 sequences | trace | %s%s | %.1f%s | %.1f | %.2f | | |"
          % (m, "" if n == 4 else " (fisher_nseq 2, ×2)", f * scale, "" if n == 4 else " (%.1f measured)" % f, p, f * scale / p))
PY
