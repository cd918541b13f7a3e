#!/usr/bin/python3
"""Do two Fisher estimates have the same expectation? For every layer of two
aptq reports (e.g. fisher_method = probes and backward on the same model),
z = (a − b) / sqrt(se_a² + se_b²) from allocation_sensitivity and its
standard error over the sequences (conservative when both used the same
sequences: the sequences' own spread is counted twice). PASS when every
|z| < ZMAX; the largest |z| goes to stderr (it depends on float32 rounding).
  fisher_agree.py A.json B.json [ZMAX]"""
import json
import math
import sys

a, b = (json.load(open(p))["layers"] for p in sys.argv[1:3])
zmax = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
z = [(x["allocation_sensitivity"] - y["allocation_sensitivity"])
     / math.sqrt(x["allocation_sensitivity_stderr"] ** 2 + y["allocation_sensitivity_stderr"] ** 2) for x, y in zip(a, b)]
worst = max(abs(v) for v in z)
# the ratio of the means over all layers: a scale error would show here even where single layers are noisy
ratio = sum(x["allocation_sensitivity"] for x in a) / sum(y["allocation_sensitivity"] for y in b)
ok = worst < zmax and len(a) == len(b)
print("%s fisher agree: %d layers, the two estimates differ by less than %g combined standard errors in every layer"
      % ("PASS" if ok else "FAIL", len(z), zmax))
print("fisher agree: max |z| %.2f, ratio of the sums %.4f" % (worst, ratio), file=sys.stderr)
sys.exit(0 if ok else 1)
