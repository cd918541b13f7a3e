#!/usr/bin/python3
"""The table of tools/quality-table.sh (issue 16, docs/results.md#every-method-per-model).

Reads a manifest (tab-separated, one line per table row):
    group  kind  width  key  label  quantize_report  eval_report
kind `u` (a uniform width: width = its bits) or `m` (mixed precision:
width = the budget in average code bits); key names the method (the
reference method's key is --ref, `gptq` by default); the quantize report
gives `average_bits`, the eval report (`aptq eval --quantized`, one pass
per file, every file on the same sequences) perplexity, KL divergence and
top-1 agreement.

Prints one Markdown table per group setting: the uniform rows by width,
widest first, then the mixed rows by budget (the manifest's order within). Δ is the paired difference of
the per-sequence mean KL divergence, row − reference, over the same
sequences, with its standard error over sequences (sample standard
deviation of the differences / √n) and how many standard errors it is.
The reference of a uniform row is the reference method at the same width
and group setting; of a mixed row, the reference method at the widest
uniform width of the table that fits the budget. After each table every
mixed row is also set against the best uniform row that fits its budget
(the lowest mean KL divergence of the uniform rows at or below it).

    usage: quality_table.py MANIFEST MODEL TOKENS CALIB [--ref KEY]
           quality_table.py --selftest   (fixed input, checked figures)
"""
import argparse
import json
import math
import os
import sys
import tempfile


def paired(ref, row):
    """Mean and standard error over sequences of row - ref (per-sequence mean KLD)."""
    a, b = ref["kl_divergence_per_sequence"], row["kl_divergence_per_sequence"]
    if len(a) != len(b) or len(a) < 2:
        sys.exit(f"quality_table.py: {len(a)} and {len(b)} sequences cannot be paired; evaluate both on the same >= 2 sequences")
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    return m, math.sqrt(sum((v - m) ** 2 for v in d) / (n - 1) / n)


def read_manifest(path):
    rows = []
    for line in open(path):
        if not line.strip():
            continue
        g, kind, width, key, label, qrep, erep = line.rstrip("\n").split("\t")
        if kind not in ("u", "m"):
            sys.exit(f"quality_table.py: kind '{kind}' in {path}; use u (uniform) or m (mixed)")
        rows.append(dict(group=int(g), kind=kind, width=float(width), key=key, label=label,
                         bits=json.load(open(qrep))["average_bits"], ev=json.load(open(erep))))
    return rows


def delta_cell(ref, row):
    if ref is None:
        return "—"
    m, se = paired(ref["ev"], row["ev"])
    z = m / se if se > 0 else float("nan")
    return f"{m:+.5f} ± {se:.5f} ({z:+.1f})"


def fits(rows, g, budget):
    return [r for r in rows if r["group"] == g and r["kind"] == "u" and r["width"] <= budget]


def reference(rows, row, ref_key):
    """The reference row of `row` (None for the reference rows themselves)."""
    if row["kind"] == "u":
        if row["key"] == ref_key:
            return None
        width = row["width"]
    else:
        widths = [r["width"] for r in fits(rows, row["group"], row["width"]) if r["key"] == ref_key]
        if not widths:
            return None
        width = max(widths)
    for r in rows:
        if r["group"] == row["group"] and r["kind"] == "u" and r["key"] == ref_key and r["width"] == width:
            return r
    return None


def width_str(x):
    return f"{x:g}"


def render(rows, model, tokens, calib, ref_key, out):
    groups = list(dict.fromkeys(r["group"] for r in rows))
    refname = next((r["label"] for r in rows if r["key"] == ref_key), ref_key)
    for g in groups:
        # uniform rows by width (widest first), then mixed rows by budget; the row list's order within
        gr = sorted((r for r in rows if r["group"] == g), key=lambda r: (r["kind"] == "m", -r["width"] if r["kind"] == "u" else r["width"]))
        e0 = gr[0]["ev"]
        gs = "per channel" if g == 0 else f"groups of {g}"
        out.write(f"\n#### {model}, {gs}, {tokens}, {e0['nseq']} x {e0['seqlen']} tokens "
                  f"(full precision: perplexity {e0['full_precision_perplexity']:.4f}); calibration {calib}\n\n")
        out.write(f"| bits | method | average code bits | perplexity | mean KLD ± stderr | top-1 agreement "
                  f"| Δ mean KLD against {refname} ± stderr (standard errors) |\n")
        out.write("|---|---|---|---|---|---|---|\n")
        for r in gr:
            e = r["ev"]
            ref = reference(rows, r, ref_key)
            d = delta_cell(ref, r)
            if r["kind"] == "m" and ref is not None:
                d = f"{d} against {width_str(ref['width'])}-bit"
            bits = width_str(r["width"]) if r["kind"] == "u" else f"{width_str(r['width'])} (budget)"
            out.write(f"| {bits} | {r['label']} | {r['bits']:.4f} | {e['perplexity']:.4f} "
                      f"| {e['kl_divergence']:.5f} ± {e['kl_divergence_stderr']:.5f} "
                      f"| {100 * e['top1_agreement']:.2f} % | {d} |\n")
        mixed = [r for r in gr if r["kind"] == "m"]
        if mixed:
            out.write("\nEach mixed row against the best uniform row that fits its budget "
                      "(the lowest mean KLD at or below it), Δ mean KLD mixed − uniform:\n\n")
            for r in mixed:
                cand = fits(rows, g, r["width"])
                if not cand:
                    out.write(f"- {width_str(r['width'])}, {r['label']}: no uniform row fits\n")
                    continue
                best = min(cand, key=lambda c: c["ev"]["kl_divergence"])
                out.write(f"- {width_str(r['width'])}, {r['label']}: against {best['label']} "
                          f"{width_str(best['width'])}-bit {delta_cell(best, r)}\n")


def selftest():
    """Three sequences, hand-computed figures: the reference choice and the paired arithmetic."""
    d = tempfile.mkdtemp()
    man = []

    def add(g, kind, width, key, label, bits, kld, ppl=10.0):
        base = f"{d}/{key}-{width}-{g}"
        json.dump({"average_bits": bits}, open(base + "-q.json", "w"))
        json.dump({"nseq": 3, "seqlen": 4, "full_precision_perplexity": 9.0, "perplexity": ppl,
                   "kl_divergence": sum(kld) / 3, "kl_divergence_stderr": 0.01, "top1_agreement": 0.5,
                   "kl_divergence_per_sequence": kld}, open(base + "-e.json", "w"))
        man.append(f"{g}\t{kind}\t{width}\t{key}\t{label}\t{base}-q.json\t{base}-e.json")

    add(0, "u", 4, "gptq", "GPTQ", 4, [0.1, 0.2, 0.3])
    add(0, "u", 4, "aptq", "APTQ", 4, [0.1, 0.1, 0.1])
    add(0, "u", 3, "gptq", "GPTQ", 3, [1.0, 1.0, 1.0])
    add(0, "u", 3, "aptq", "APTQ", 3, [0.5, 0.7, 0.6])
    add(0, "u", 2, "gptq", "GPTQ", 2, [5.0, 5.0, 5.0])
    add(0, "m", 3.5, "avg", "avg_bits", 3.4983, [0.4, 0.5, 0.9])
    with open(f"{d}/manifest", "w") as f:
        f.write("\n".join(man) + "\n")
    rows = read_manifest(f"{d}/manifest")
    # APTQ 3 - GPTQ 3: d = (-0.5, -0.3, -0.4), mean -0.4, sd 0.1, se 0.1/sqrt 3
    m, se = paired(rows[2]["ev"], rows[3]["ev"])
    assert abs(m + 0.4) < 1e-12 and abs(se - 0.1 / math.sqrt(3)) < 1e-12, (m, se)
    # the mixed row's reference is GPTQ at 3 bits (the widest that fits 3.5), its best fit APTQ 3
    assert reference(rows, rows[5], "gptq") is rows[2]
    assert reference(rows, rows[0], "gptq") is None and reference(rows, rows[1], "gptq") is rows[0]
    assert min(fits(rows, 0, 3.5), key=lambda c: c["ev"]["kl_divergence"]) is rows[3]
    render(rows, "selftest", "3 fixed sequences", "none", "gptq", sys.stdout)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)


def main():
    if sys.argv[1:] == ["--selftest"]:
        selftest()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("model")
    ap.add_argument("tokens")
    ap.add_argument("calib")
    ap.add_argument("--ref", default="gptq")
    a = ap.parse_args()
    render(read_manifest(a.manifest), a.model, a.tokens, a.calib, a.ref, sys.stdout)


if __name__ == "__main__":
    main()
