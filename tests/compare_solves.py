#!/usr/bin/python3
"""Compare two `aptq layer` outputs whose inputs differ only by H (and
H_out) times FACTOR: prints whether Q, codes, scales and zeros are all
finite and (FACTOR a power of two) bit-identical, and the error ratio over FACTOR (1 when the
solve is scale-invariant).
  compare_solves.py A.h5 B.h5 FACTOR"""
import math
import sys

import h5py
import numpy as np

a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
factor = float.fromhex(sys.argv[3]) if "0x" in sys.argv[3] else float(sys.argv[3])
names = ("Q", "codes", "scales", "zeros", "g_idx")
finite = all(np.isfinite(b[n][:]).all() for n in names)
same = all(np.array_equal(a[n][:], b[n][:]) for n in names)
ratio = b.attrs["error"] / a.attrs["error"] / factor
exact = math.frexp(factor)[0] == 0.5  # a power of two: the solve must be bit-identical
print(f"compare {sys.argv[3]}: finite {finite}," + (f" bit-identical {same}," if exact else "") + f" error ratio / factor {ratio:.6f}")
