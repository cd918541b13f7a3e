#!/usr/bin/python3
"""Compare two directories made by tools/identical.sh: every HDF5 file's
datasets (bytes) and attributes, and every JSON report's figures, except
times, memory, rank counts and the directory names inside paths.
  h5same.py DIR_A DIR_B"""
import glob
import json
import os
import re
import sys

import h5py
import numpy as np

VOLATILE = ("seconds", "rss", "memory", "phase", "ranks", "busy", "wait", "predicted", "created", "heap_audit", "gflops", "fraction_of")
# an output's own directory inside a path (the two runs write to different ones)
OWN = re.compile(r"(/[^\s'\"=]*)?/([^/\s'\"=]+\.(?:h5|json|u32|ck))")


def attrs(obj, d):
    out = {}
    for k, v in obj.attrs.items():
        if any(s in k for s in VOLATILE):
            continue
        if isinstance(v, bytes):
            v = v.decode()
        out[k] = OWN.sub(r"DIR/\2", v).replace(d, "DIR") if isinstance(v, str) else np.asarray(v).tobytes()
    return out


def walk(f, d):
    items = {"/": attrs(f, d)}

    def visit(name, obj):
        items[name] = attrs(obj, d)
        if isinstance(obj, h5py.Dataset):
            items[name + "#data"] = (obj.dtype.str, obj.shape, obj[()].tobytes())

    f.visititems(visit)
    return items


def report(path, d):
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not any(s in k for s in VOLATILE)}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return OWN.sub(r"DIR/\2", x).replace(d, "DIR") if isinstance(x, str) else x

    return {"": strip(json.load(open(path)))}


def main():
    a, b = sys.argv[1], sys.argv[2]
    bad = n = 0
    for fa in sorted(glob.glob(os.path.join(a, "*.h5")) + glob.glob(os.path.join(a, "*.json"))):
        base = os.path.basename(fa)
        if base == "layer_in.h5":
            continue
        fb = os.path.join(b, base)
        n += 1
        if not os.path.exists(fb):
            print("missing in", b, base)
            bad += 1
            continue
        if base.endswith(".h5"):
            with h5py.File(fa, "r") as x, h5py.File(fb, "r") as y:
                ia, ib = walk(x, os.path.abspath(a)), walk(y, os.path.abspath(b))
        else:
            ia, ib = report(fa, os.path.abspath(a)), report(fb, os.path.abspath(b))
        diff = sorted(k for k in set(ia) | set(ib) if ia.get(k) != ib.get(k))
        if diff:
            bad += 1
            print("DIFFER:", base, diff[:6])
    print(f"compared {n} files (HDF5 datasets and attributes, report figures): " + ("identical" if not bad else f"{bad} DIFFER"))
    sys.exit(1 if bad else 0)


main()
