#!/usr/bin/python3
"""Compare two aptq recon reports of the same quantized file, made at P
ranks and at 1 rank, and check their figures against reference values:
  check_recon.py REPORT_P REPORT_1 RTOL KEY=VALUE ...
The figures must be identical at both rank counts (bit for bit: the sums are
in sequence order), and within RTOL of the reference. The reference of a
low-bit quantized model moves with the machine's float32 rounding (a code
flipped in an early block changes every later one), so RTOL is the
tolerance between machines, not between rank counts."""
import json
import sys

rp, r1 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rtol = float(sys.argv[3])
for item in sys.argv[4:]:
    key, ref = item.split("=")
    a, b = rp[key], r1[key]
    if a != b:
        sys.exit(f"recon {key}: {a!r} at {rp['ranks']} ranks but {b!r} at 1 rank")
    if abs(a / float(ref) - 1) > rtol:
        sys.exit(f"recon {key}: {a} is not within {rtol:g} of the reference {ref}")
    print(f"recon {key}: the same at 1 rank, within {rtol:g} of the reference")
