#!/usr/bin/python3
"""Turn an 8-bit quantized file with groups of one column (aptq quantize
--bits=8 --group_size=1) into one whose dequantized weights are the
model's own, bit for bit: every scale is the weight's magnitude (its
float32 value; 1 for a zero weight: scales must be positive), every zero
point 1 and every code 2, 0 or 1 by the weight's sign, so
scale * (code - zero) = w exactly. The eval of this file against the full-precision model must give
a KL divergence of exactly 0 and top-1 agreement of 100%.
  exact_qfile.py MODEL FILE.h5"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import llama_ref  # noqa: E402

model, path = sys.argv[1], sys.argv[2]
_, W = llama_ref.load_model(model)
with h5py.File(path, "r+") as f:
    for name, g in f["layers"].items():
        if int(g.attrs["bits"]) != 8 or int(g.attrs["group_size"]) != 1:
            sys.exit("%s: %s is not 8-bit with groups of one column" % (path, name))
        w = W[name].astype(np.float32)
        g["scales"][...] = np.where(w == 0, np.float32(1), np.abs(w))
        g["zeros"][...] = 1
        codes = (1 + np.sign(w)).astype(np.uint32)  # 0, 1 or 2
        nw = g["qweight"].shape[1]
        padded = np.zeros((w.shape[0], nw * 4), dtype=np.uint32)
        padded[:, : w.shape[1]] = codes
        quads = padded.reshape(w.shape[0], nw, 4)  # four 8-bit codes per word, first in the low byte
        g["qweight"][...] = quads[:, :, 0] | quads[:, :, 1] << 8 | quads[:, :, 2] << 16 | quads[:, :, 3] << 24
        deq = g["scales"][()] * (llama_ref.unpack_codes(g["qweight"][()], 8, w.shape[1]) - g["zeros"][()]).astype(np.float32)
        if not np.array_equal(deq, w):
            sys.exit("%s: %s does not dequantize to the model's weights" % (path, name))
print("exact quantized file: every layer dequantizes to the model's weights")
