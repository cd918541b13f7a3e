#!/usr/bin/env bash
# Mixed-precision tables (issue 5, docs/mixed.md) on wt2-llama-s: APTQ with
# R in {0, 0.25, 0.5, 0.75, 0.9, 1} for the trace and knapsack allocations
# (Fisher sensitivities, and the layer Hessians' traces: trace-layer,
# knapsack-layer), random (seeds 1, 2, 3) and blockwise, one sweep run each;
# calibration 128 x 256 tokens of Brown, WikiText-2 test perplexity on the
# first 100 x 256 tokens. Prints Markdown tables with paired standard errors
# (per-sequence NLL differences), checks that perplexity does not increase
# with R beyond 2 standard errors, compares trace with random and blockwise
# at R = 0.5 and 0.75, times a 4-value sweep against 4 single runs, and
# draws perplexity against average bits (gnuplot) into PNG files.
#   usage: tools/mixed-table.sh [RANKS] [PNG_PREFIX]   (default 2, docs/mixed)
#   APTQ_GROUPS="0 32" chooses the group sizes; APTQ=path a binary other than build/aptq;
#   WORK=dir keeps the files there and skips the runs whose results exist (a rerun continues).
set -euo pipefail
ranks=${1:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
png=${2:-$here/docs/mixed}
data=${APTQ_DATA:-$here/../shared/data}
aptq=${APTQ:-$here/build/aptq}
"$here/tools/install-deps.sh" --plots
. "$here/tools/table-env.sh"
ratios="0,0.25,0.5,0.75,0.9,1"
calib=(--model="$data/wt2-llama-s" --method=aptq --calib="$data/text/brown.llama2.u32" --nseq=128 --seqlen=256)
evalargs=(--model="$data/wt2-llama-s" --tokens="$data/text/wikitext2-test.llama2.u32" --nseq=100 --seqlen=256)
for g in ${APTQ_GROUPS:-0 32}; do
  for alloc in trace knapsack trace-layer knapsack-layer random:1 random:2 random:3 blockwise; do
    name=${alloc/:/}
    seed=${alloc#*:}; [ "$seed" = "$alloc" ] && seed=1234
    sens=fisher; [ "${alloc%-layer}" != "$alloc" ] && sens=layer
    kind=${alloc%%:*}; kind=${kind%-layer}
    last=${ratios##*,}
    [ -s "$work/eval-$name-g$g-R$last.json" ] && continue
    echo "# g$g $name: sweep R = $ratios" >&2
    run quantize "${calib[@]}" --group_size="$g" --R="$ratios" --allocation="$kind" --sensitivity="$sens" --seed="$seed" \
      --output="$work/$name-g$g.h5" --report="$work/$name-g$g.json" --overwrite=yes > /dev/null
    for R in ${ratios//,/ }; do
      run eval "${evalargs[@]}" --quantized="$work/$name-g$g-R$R.h5" --report="$work/eval-$name-g$g-R$R.json" > /dev/null
    done
  done
done
# sweep cost: 4 values of R in one run against 4 single runs (trace, per channel)
if [ ! -s "$work/cost.txt" ]; then
t0=$(date +%s.%N)
run quantize "${calib[@]}" --R=0.5,0.75,0.9,1 --output="$work/cost.h5" --overwrite=yes > /dev/null
t1=$(date +%s.%N)
for R in 0.5 0.75 0.9 1; do run quantize "${calib[@]}" --R=$R --output="$work/cost1-$R.h5" --overwrite=yes > /dev/null; done
t2=$(date +%s.%N)
echo "$t0 $t1 $t2" > "$work/cost.txt"
fi

/usr/bin/python3 - "$work" "$png" "$ratios" "${APTQ_GROUPS:-0 32}" <<'EOF'
import json, math, os, subprocess, sys
work, png, ratios, groups = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split()
allocs = ["trace", "knapsack", "trace-layer", "knapsack-layer", "random1", "random2", "random3", "blockwise"]

def load(name, g, R):
    q = json.load(open(f"{work}/{name}-g{g}-R{R}.json"))
    e = json.load(open(f"{work}/eval-{name}-g{g}-R{R}.json"))
    return q["average_bits"], e["perplexity"], [x / (e["seqlen"] - 1) for x in e["nll_per_sequence"]]

def paired(a, b):
    """ppl(a) - ppl(b) and its standard error from per-sequence mean NLLs."""
    n = len(a)
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n)
    pa, pb = math.exp(sum(a) / n), math.exp(sum(b) / n)
    return pa - pb, pb * se  # delta ppl, and its SE to first order

for g in groups:
    res = {a: {R: load(a, g, R) for R in ratios} for a in allocs}
    gs = "per channel" if g == "0" else f"groups of {g}"
    print(f"\n### Perplexity, {gs} (average bits achieved in parentheses)\n")
    print("| R | " + " | ".join(allocs) + " |")
    print("|---|" + "---|" * len(allocs))
    for R in ratios:
        print(f"| {R} | " + " | ".join(f"{res[a][R][1]:.3f} ({res[a][R][0]:.3f})" for a in allocs) + " |")
    print(f"\nMonotonicity (perplexity at the next R minus this R, ± paired SE; flagged if above +2 SE):\n")
    for a in allocs:
        cells = []
        for R0, R1 in zip(ratios, ratios[1:]):
            d, se = paired(res[a][R1][2], res[a][R0][2])
            flag = " **up**" if d > 2 * se else ""
            cells.append(f"{R0}→{R1}: {d:+.3f} ± {se:.3f}{flag}")
        print(f"- {a}: " + "; ".join(cells))
    print(f"\nTrace against the baselines (perplexity difference trace − baseline ± paired SE):\n")
    for R in ("0.5", "0.75"):
        cells = []
        for b in ("random1", "random2", "random3", "blockwise", "knapsack", "trace-layer"):
            d, se = paired(res["trace"][R][2], res[b][R][2])
            cells.append(f"{b} {d:+.3f} ± {se:.3f}")
        print(f"- R = {R}: " + "; ".join(cells))
    with open(f"{work}/plot-g{g}.dat", "w") as f:
        for a in allocs:
            f.write(f"# {a}\n")
            for R in ratios:
                f.write(f"{res[a][R][0]} {res[a][R][1]}\n")
            f.write("\n\n")
    title = f"wt2-llama-s APTQ mixed 2/4-bit, {gs}: WikiText-2 perplexity vs average bits"
    plots = ", ".join(f"'{work}/plot-g{g}.dat' index {i} with linespoints title '{a}'" for i, a in enumerate(allocs))
    script = (f"set terminal pngcairo size 900,600; set output '{png}-g{g}.png'; set title \"{title}\";"
              f"set xlabel 'average bits'; set ylabel 'perplexity'; set grid; set key top right; plot {plots}")
    subprocess.run(["gnuplot", "-e", script], check=True)
    print(f"\nplot: {png}-g{g}.png")
t0, t1, t2 = map(float, open(f"{work}/cost.txt").read().split())
print(f"\nSweep cost: R = 0.5,0.75,0.9,1 in one run {t1 - t0:.1f} s; four single runs {t2 - t1:.1f} s; ratio {(t1 - t0) / (t2 - t1):.2f}")
EOF
