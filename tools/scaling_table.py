#!/usr/bin/python3
"""Tables and plots of a scaling study (tools/scaling.sh): reads
OUT/{strong,weak}-npP.json (aptq bench reports), prints Markdown tables and
writes OUT/{strong,weak}.tsv and PNG plots PNG-{strong,weak}.png.
  usage: scaling_table.py OUT PNG_PREFIX RANKS...
Strong scaling: speedup S = T(1)/T(P), efficiency S/P, per phase (phases
that take no time on one rank, reduce and wait, are shown in seconds only).
Weak scaling: efficiency T(1)/T(P), per phase for the data-parallel
phases (forward, hessian); factor, solve and write do the same total work
at every rank count ("fixed work")."""
import json
import os
import shutil
import subprocess
import sys

out, png, ranks = sys.argv[1], sys.argv[2], [int(r) for r in sys.argv[3:]]
phases = ["forward", "hessian", "reduce", "factor", "solve", "write", "wait"]
compute = ["forward", "hessian", "factor", "solve", "write"]
data_parallel = ["forward", "hessian"]


def load(kind):
    runs = {}
    for p in ranks:
        path = os.path.join(out, f"{kind}-np{p}.json")
        if os.path.exists(path):
            runs[p] = json.load(open(path))
    return runs


def gib(b):
    return b / 2**30


for kind in ("strong", "weak"):
    runs = load(kind)
    if not runs:
        continue
    base_p = min(runs)
    base = runs[base_p]
    r0 = runs[base_p]
    print(f"\n### {kind.capitalize()} scaling: {r0['shape']}-shaped, {r0['blocks']} block(s), {r0['method']}, "
          f"{'%d x %d tokens' % (r0['calib_nseq'], r0['calib_seqlen']) if kind == 'strong' else '%d sequences of %d tokens per rank' % (r0['calib_nseq'] // base_p, r0['calib_seqlen'])}\n")
    head = "| ranks | tokens | pass s | " + " | ".join(f"{p} s" for p in phases) + " | efficiency | " + \
        " | ".join(f"eff. {p}" for p in compute) + " | Hessian/SGEMM | peak RSS GiB | predicted GiB |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    rows = []
    for p in sorted(runs):
        r = runs[p]
        ph = r["phases"]
        scale = p / base_p if kind == "strong" else 1.0

        def eff(t1, tp):
            if tp <= 0:
                return float("nan")
            return t1 / (scale * tp)
        e_all = eff(base["seconds"], r["seconds"])
        # weak scaling: only the data-parallel phases keep their work per
        # rank; factor, solve and write do the same total work at every P
        e_ph = [eff(base["phases"][c], ph[c]) if kind == "strong" or c in data_parallel else float("nan") for c in compute]
        mem = r["memory"]
        rows.append([p, r["calib_nseq"] * r["calib_seqlen"], r["seconds"]] + [ph[x] for x in phases] + [e_all] + e_ph +
                    [r["hessian_fraction_of_sgemm"], gib(mem["peak_rss_bytes"]), gib(mem.get("predicted_peak_bytes", 0))])
        print(f"| {p} | {rows[-1][1]} | {r['seconds']:.1f} | " + " | ".join(f"{ph[x]:.2f}" for x in phases) +
              f" | {100 * e_all:.0f}% | " + " | ".join("fixed work" if e != e else f"{100 * e:.0f}%" for e in e_ph) +
              f" | {100 * r['hessian_fraction_of_sgemm']:.0f}% | {gib(mem['peak_rss_bytes']):.2f} | "
              f"{gib(mem.get('predicted_peak_bytes', 0)):.2f} |")
    with open(os.path.join(out, f"{kind}.tsv"), "w") as f:
        f.write("\t".join(["ranks", "tokens", "seconds"] + phases + ["efficiency"] + [f"eff_{c}" for c in compute] +
                          ["hessian_fraction_of_sgemm", "peak_rss_gib", "predicted_gib"]) + "\n")
        for row in rows:
            f.write("\t".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "\n")
    tsv = os.path.join(out, f"{kind}.tsv")
    title = f"aptq bench {kind} scaling, {r0['shape']} block: efficiency per phase"
    cols = {c: 3 + len(phases) + 2 + i for i, c in enumerate(compute)}  # 1-based gnuplot columns
    plots = [f"'{tsv}' using 1:{3 + len(phases) + 1} with linespoints lw 2 title 'whole pass'"]
    plots += [f"'{tsv}' using 1:{cols[c]} with linespoints title '{c}'" for c in compute if kind == "strong" or c in data_parallel]
    script = (f"set terminal pngcairo size 900,600; set output '{png}-{kind}.png'; set title \"{title}\"; "
              f"set xlabel 'ranks'; set ylabel 'parallel efficiency'; set logscale x 2; set grid; set yrange [0:1.3]; "
              f"set key bottom left; plot " + ", ".join(plots))
    if shutil.which("gnuplot"):
        subprocess.run(["gnuplot", "-e", script], check=True)
        print(f"\nplot: {png}-{kind}.png")
    else:
        print("\nno plot: gnuplot is not installed (Debian: apt-get install gnuplot-nox)")
