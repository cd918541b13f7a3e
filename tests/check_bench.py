#!/usr/bin/python3
"""Check an `aptq bench` report: usage check_bench.py REPORT RANKS.
Fails (exit message) unless every phase is there and non-negative, the
per-rank lists have one entry per rank, the rates are positive, and the
predicted peak memory is within 50% of the measured peak RSS. Under the
sanitizers (APTQ_SANITIZED set by tools/run-sanitized.sh) the shadow memory
inflates the RSS, so only the upper side is checked there."""
import json
import os
import sys

report, ranks = json.load(open(sys.argv[1])), int(sys.argv[2])
phases = ["forward", "hessian", "reduce", "factor", "solve", "write", "wait"]
if sorted(report["phases"]) != sorted(phases):
    sys.exit(f"phases {sorted(report['phases'])}, expected {sorted(phases)}")
if any(report["phases"][p] < 0 for p in phases):
    sys.exit(f"negative phase time: {report['phases']}")
for key in ("rank_busy_seconds", "rank_wait_seconds"):
    if len(report[key]) != ranks or min(report[key]) < 0:
        sys.exit(f"{key} = {report[key]} for {ranks} ranks")
if report["ranks"] != ranks or len(report["memory"]["rank_peak_rss_bytes"]) != ranks:
    sys.exit("rank count mismatch")
if not (report["sgemm_gflops_per_rank"] > 0 and 0 < report["hessian_fraction_of_sgemm"] < 2):
    sys.exit(f"rates: sgemm {report['sgemm_gflops_per_rank']}, hessian fraction {report['hessian_fraction_of_sgemm']}")
pred, meas = report["memory"]["predicted_peak_bytes"], report["memory"]["peak_rss_bytes"]
low = 0.0 if os.environ.get("APTQ_SANITIZED") else 0.5
if not (low * meas <= pred <= 1.5 * meas):
    sys.exit(f"predicted peak {pred:.4g} B is not within [{low}, 1.5] x the measured {meas:.4g} B")
print(f"predicted peak {pred:.4g} B, measured {meas:.4g} B", file=sys.stderr)
print("check_bench: report complete, memory prediction checked against the peak RSS")
