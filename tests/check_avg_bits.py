#!/usr/bin/python3
"""check_avg_bits.py REPORT.json BUDGET FILE.h5: an avg_bits output keeps
its budget and says so. The report's average_bits equals the
parameter-weighted mean of its layers' widths, is at most BUDGET (average
code bits per weight), every width is one of 2, 3, 4, 8, and each layer's
width in the report equals the file's /layers/NAME bits attribute. Prints
'avg_bits BUDGET: achieved A, widths {b: layers}'; exits 1 otherwise."""
import json
import sys

import h5py

report_path, budget, h5_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
r = json.load(open(report_path))
layers = r["layers"]
params = sum(l["params"] for l in layers)
mean = sum(l["bits"] * l["params"] for l in layers) / params
fail = []
if abs(mean - r["average_bits"]) > 1e-9 * mean:
    fail.append(f"average_bits {r['average_bits']} is not the layers' mean {mean}")
if mean > budget * (1 + 1e-12):
    fail.append(f"average {mean} is over the budget {budget}")
if r.get("avg_bits") != budget:
    fail.append(f"report avg_bits {r.get('avg_bits')} is not {budget}")
if any(l["bits"] not in (2, 3, 4, 8) for l in layers):
    fail.append("a width outside {2, 3, 4, 8}")
with h5py.File(h5_path, "r") as f:
    for l in layers:
        b = int(f["layers"][l["name"]].attrs["bits"])
        if b != l["bits"]:
            fail.append(f"{l['name']}: report {l['bits']} bits, file {b}")
if fail:
    sys.exit("check_avg_bits: " + "; ".join(fail))
count = {b: sum(1 for l in layers if l["bits"] == b) for b in sorted({l["bits"] for l in layers})}
print(f"avg_bits {budget:g}: achieved {mean:.6f}, widths {count}")
