#!/usr/bin/python3
"""A deeper model of the same shape, for cost measurements at depth (the
Fisher estimate's cost against the pass's, docs/mixed.md): the decoder
blocks of a Hugging Face LLaMA directory repeated in order until there are
BLOCKS of them (block i is a copy of block i mod L), embedding, norm and
lm_head as they are; one safetensors file, tensors at their stored dtype.
The result is not a trained model, only one with the real shapes and
weight statistics.
  deepen_model.py SRC_DIR BLOCKS DST_DIR"""
import json
import os
import struct
import sys

src, blocks, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = json.load(open(os.path.join(src, "config.json")))
L = cfg["num_hidden_layers"]
tensors = {}  # name -> (dtype, shape, bytes)
files = [f for f in sorted(os.listdir(src)) if f.endswith(".safetensors")]
for f in files:
    raw = open(os.path.join(src, f), "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    for name, info in head.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], raw[8 + n + b:8 + n + e])
out = {}
for name, t in tensors.items():
    if not name.startswith("model.layers."):
        out[name] = t
        continue
    rest = name[len("model.layers."):]
    layer, tail = rest.split(".", 1)
    for i in range(int(layer), blocks, L):
        out["model.layers.%d.%s" % (i, tail)] = t
os.makedirs(dst, exist_ok=True)
header, off, data = {}, 0, []
for name in sorted(out):
    dt, shape, b = out[name]
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
    data.append(b)
    off += len(b)
hb = json.dumps(header).encode()
hb += b" " * (-len(hb) % 8)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb)
    for b in data:
        f.write(b)
cfg["num_hidden_layers"] = blocks
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
print("deepen_model: %d blocks from %d in %s" % (blocks, L, dst))
