#!/usr/bin/python3
"""The quantized model's perplexity against full precision, from aptq eval
reports: fails unless every Q.json is within MAXREL (relative) of FP.json.
Prints one PASS/FAIL line per file without the figures (they move with the
machine's float32 rounding); the figures go to stderr.
  ppl_within.py FP.json MAXREL NAME=Q.json ..."""
import json
import sys

fp = json.load(open(sys.argv[1]))["perplexity"]
maxrel = float(sys.argv[2])
ok = True
for arg in sys.argv[3:]:
    name, path = arg.split("=", 1)
    q = json.load(open(path))["perplexity"]
    rel = q / fp - 1
    good = rel <= maxrel
    ok &= good
    print("%s %s: perplexity within %g%% of full precision" % ("PASS" if good else "FAIL", name, 100 * maxrel))
    print("%s: perplexity %.6f, full precision %.6f, %+.2f%%" % (name, q, fp, 100 * rel), file=sys.stderr)
sys.exit(0 if ok else 1)
