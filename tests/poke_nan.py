#!/usr/bin/python3
"""Overwrite the first element of one F32/BF16 tensor in a safetensors file
with NaN (for the bad-input tests)."""
import json
import struct
import sys

path, name = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    t = header[name]
    f.seek(8 + n + t["data_offsets"][0])
    f.write(struct.pack("<f", float("nan")) if t["dtype"] == "F32" else b"\xc0\x7f")
