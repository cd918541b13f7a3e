#!/usr/bin/python3
"""The model fingerprint recomputed from docs/hdf5-schema.md alone, for a
Hugging Face safetensors model, and compared with /meta/model_fingerprint
of a quantized file made from it (the config string is taken from
/model/config_json, as the schema allows).
  fingerprint_ref.py MODEL_DIR QUANTIZED.h5   (tests/cases/ref_rtn_schema.case)"""
import hashlib
import json
import os
import struct
import sys

import h5py

DTYPES = {"F32": (0, 4), "F16": (1, 2), "BF16": (2, 2)}
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def tensors(model):
    """name -> (dtype, shape, bytes) over every shard of the model."""
    out = {}
    for f in sorted(os.listdir(model)):
        if not f.endswith(".safetensors"):
            continue
        data = open(os.path.join(model, f), "rb").read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        for name, t in header.items():
            if name != "__metadata__":
                a, b = t["data_offsets"]
                out[name] = (t["dtype"], t["shape"], data[8 + n + a:8 + n + b])
    return out


def main():
    model, qfile = sys.argv[1:3]
    with h5py.File(qfile, "r") as f:
        cfg = f["/model"].attrs["config_json"].decode()
        want = f["/meta"].attrs["model_fingerprint"].decode()
    c = json.loads(cfg)
    ts = tensors(model)
    names = ["model.embed_tokens.weight"]
    for l in range(c["num_hidden_layers"]):
        names += [f"model.layers.{l}.input_layernorm.weight", f"model.layers.{l}.post_attention_layernorm.weight"]
        names += [f"model.layers.{l}.{k}.weight" for k in LINEARS]
    names.append("model.norm.weight")
    if not c["tie_word_embeddings"]:
        names.append("lm_head.weight")
    h = hashlib.sha256(cfg.encode())
    for name in names:
        dtype, shape, data = ts[name]
        rows, cols = (1, shape[0]) if len(shape) == 1 else shape
        h.update(f"{name} {DTYPES[dtype][0]} {rows} {cols} ".encode())
        h.update(hashlib.sha256(data).digest())
    got = h.hexdigest()
    print(f"fingerprint from the schema: {'matches' if got == want else 'DIFFERS'} /meta/model_fingerprint")
    sys.exit(0 if got == want else 1)


main()
