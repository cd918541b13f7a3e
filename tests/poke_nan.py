#!/usr/bin/python3
"""Overwrite the first element of one F32/BF16 tensor in a safetensors file
with NaN, or its first elements with the VALUEs given (for the bad-input
tests).
  poke_nan.py FILE TENSOR [VALUE ...]"""
import json
import struct
import sys

path, name = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    t = header[name]
    f.seek(8 + n + t["data_offsets"][0])
    for v in [float(x) for x in sys.argv[3:]] or [float("nan")]:
        b = struct.pack("<f", v)
        f.write(b if t["dtype"] == "F32" else b[2:])  # BF16: the high half of the float32
