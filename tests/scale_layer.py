#!/usr/bin/python3
"""An `aptq layer` input made from another: H (and H_out) multiplied by
FACTOR (a float, or hexadecimal: 0x1p-996 is 2^-996), or with
--huge-row R row R of W set to ±3e38 (alternating signs: a group range
that overflows float32).
  scale_layer.py IN.h5 OUT.h5 FACTOR [--huge-row R]"""
import argparse

import h5py

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("out")
ap.add_argument("factor")
ap.add_argument("--huge-row", type=int)
a = ap.parse_args()
factor = float.fromhex(a.factor) if "0x" in a.factor else float(a.factor)
with h5py.File(a.src, "r") as f, h5py.File(a.out, "w") as g:
    W = f["W"][:]
    if a.huge_row is not None:
        W[a.huge_row, 0::2] = 3e38
        W[a.huge_row, 1::2] = -3e38
    g["W"] = W
    g["H"] = f["H"][:] * factor
    if "H_out" in f:
        g["H_out"] = f["H_out"][:] * factor
