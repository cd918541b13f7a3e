#!/usr/bin/python3
"""Check the heap audit of a run against its memory plan:
  check_heap.py REPORT.json [LABEL]
The run was made with APTQ_HEAP_AUDIT=1, so its report holds heap_audit:
the most bytes of aptq_malloc allocations live at once on any rank
(peak_bytes) and the plan's heap part (planned_bytes, memory.c). Fails
unless the audit stays within the plan (plus 64 KB for the small
bookkeeping the plan does not itemise: names, per-layer results, grids'
index maps) and reaches at least 95% of it (the plan is not loose).
A buffer the plan does not count, as small as one sequence's activations
in the test cases (128 x 256 floats), fails the first bound."""
import json
import sys

report = json.load(open(sys.argv[1]))
label = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]
audit = report.get("heap_audit")
if not audit:
    sys.exit(f"{label}: no heap_audit in the report (run with APTQ_HEAP_AUDIT=1)")
peak, plan = audit["peak_bytes"], audit["planned_bytes"]
if peak > plan + 64 * 1024:
    sys.exit(f"{label}: the heap reached {peak:.0f} B, above the memory plan's {plan:.0f} B: a buffer the plan does not count")
if peak < 0.95 * plan:
    sys.exit(f"{label}: the heap reached only {peak:.0f} B of the plan's {plan:.0f} B: the plan counts a buffer that is not there")
print(f"heap audit {label}: within the memory plan", flush=True)
print(f"  {label}: audit {peak / 2**20:.3f} MiB, plan {plan / 2**20:.3f} MiB ({peak / plan:.4f})", file=sys.stderr)
