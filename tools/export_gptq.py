#!/usr/bin/python3
"""Export an aptq quantized HDF5 file (docs/hdf5-schema.md) to the GPTQ
checkpoint layout read by AutoGPTQ, GPTQModel and vLLM:

  OUT/model.safetensors    per linear layer  <name>.qweight int32 [cols·bits/32][rows]
                                             <name>.qzeros  int32 [ngroups][rows·bits/32]
                                             <name>.scales  fp16  [ngroups][rows]
                                             <name>.g_idx   int32 [cols]
                           and every other tensor of the source checkpoint,
                           byte for byte (embeddings, norms, lm_head, and
                           Qwen2's q/k/v_proj biases as <name>.bias, the name
                           AutoGPTQ's QuantLinear loads its bias from)
  OUT/config.json          the source config + quantization_config
  OUT/quantize_config.json bits, group_size, desc_act, sym, checkpoint_format,
                           and "dynamic" per-layer bit widths (mixed precision)

Packing follows AutoGPTQ's QuantLinear.pack: qweight packs 32/bits input
rows per int32 (3 bits: 32 rows in 3 words), qzeros packs along the output
dimension. checkpoint_format "gptq" (v1) stores zero − 1, the AutoGPTQ
convention; a zero point of 0 cannot be stored that way, so such files need
--format gptq_v2 (zeros stored as they are). Scales are stored as fp16: the
export is exact when the file was made with scale_dtype = fp16; otherwise
it refuses unless --allow-scale-rounding.

usage: export_gptq.py QUANTIZED.h5 MODEL_DIR OUT_DIR [--format gptq|gptq_v2]
                      [--allow-scale-rounding] [--overwrite]
       export_gptq.py --check OUT_DIR QUANTIZED.h5   (round trip: dequantize
                      the export and compare with the HDF5 weights bit for bit)
"""
import argparse
import collections
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

LINEAR = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def fail(msg):
    sys.exit("export_gptq: error: " + msg)


# ------------------------------------------------------------- safetensors I/O
def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def source_tensors(model_dir):
    """{name: (dtype, shape, path, begin, end)} of a single or sharded checkpoint."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    elif os.path.exists(os.path.join(model_dir, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        fail(f"{model_dir}: no model.safetensors or model.safetensors.index.json; give the Hugging Face directory the file was made from")
    out = {}
    for fn in files:
        path = os.path.join(model_dir, fn)
        header, base = read_header(path)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            out[name] = (info["dtype"], info["shape"], path, base + b, base + e)
    return out


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype string, shape, bytes)."""
    header, offset = {"__metadata__": metadata}, 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, data in tensors:
            f.write(data)


def read_safetensors_arrays(path):
    header, base = read_header(path)
    raw = open(path, "rb").read()
    types = {"I32": "<i4", "F16": "<f2", "F32": "<f4", "BF16": "<u2"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], np.frombuffer(raw[base + b:base + e], dtype=types.get(info["dtype"], "u1")).reshape(info["shape"]))
    return out


# ------------------------------------------------------------------ packing
def unpack_h5_codes(qweight, bits, cols):
    """aptq's per-row LSB-first bitstream (docs/hdf5-schema.md) -> int64 [rows][cols]."""
    q = qweight.astype(np.uint64)
    nw = q.shape[1]
    s = np.arange(cols, dtype=np.int64) * bits
    w = s // 32
    lo = q[:, w]
    hi = np.where((w + 1 < nw)[None, :], q[:, np.minimum(w + 1, nw - 1)], np.uint64(0))
    return (((lo | (hi << np.uint64(32))) >> (s % 32).astype(np.uint64)[None, :]) & np.uint64((1 << bits) - 1)).astype(np.int64)


def pack_rows(v, bits):
    """AutoGPTQ packing of int values v [n][m] along axis 0 -> uint32 [n·bits/32][m]."""
    v = v.astype(np.uint32)
    n = v.shape[0]
    if bits in (2, 4, 8):
        per = 32 // bits
        out = np.zeros((n // per, v.shape[1]), dtype=np.uint32)
        for j in range(per):
            out |= v[j::per] << np.uint32(bits * j)
        return out
    # 3 bits: 32 values in 3 words, values 10 and 21 straddle words
    blocks = v.reshape(n // 32, 32, v.shape[1])
    out = np.zeros((n // 32, 3, v.shape[1]), dtype=np.uint32)
    for j in range(10):
        out[:, 0] |= blocks[:, j] << np.uint32(3 * j)
    out[:, 0] |= blocks[:, 10] << np.uint32(30)
    out[:, 1] |= (blocks[:, 10] >> np.uint32(2)) & np.uint32(1)
    for j in range(10):
        out[:, 1] |= blocks[:, 11 + j] << np.uint32(3 * j + 1)
    out[:, 1] |= blocks[:, 21] << np.uint32(31)
    out[:, 2] |= (blocks[:, 21] >> np.uint32(1)) & np.uint32(3)
    for j in range(10):
        out[:, 2] |= blocks[:, 22 + j] << np.uint32(3 * j + 2)
    return out.reshape(n // 32 * 3, v.shape[1])


def unpack_rows(p, bits, n):
    """Inverse of pack_rows (written independently of it: bit positions of a 32-value block)."""
    p = p.astype(np.uint64)
    if bits in (2, 4, 8):
        per = 32 // bits
        out = np.zeros((n, p.shape[1]), dtype=np.int64)
        for j in range(per):
            out[j::per] = ((p >> np.uint64(bits * j)) & np.uint64((1 << bits) - 1)).astype(np.int64)
        return out
    words = p.reshape(n // 32, 3, p.shape[1])
    out = np.zeros((n // 32, 32, p.shape[1]), dtype=np.int64)
    for j in range(32):  # value j is bits 3j .. 3j+2 of the block's 96-bit stream, word k holding bits 32k .. 32k+31
        for b in range(3):
            k = 3 * j + b
            out[:, j] |= (((words[:, k // 32] >> np.uint64(k % 32)) & np.uint64(1)) << np.uint64(b)).astype(np.int64)
    return out.reshape(n, p.shape[1])


# ------------------------------------------------------------------ export
def h5_layers(path):
    import h5py
    f = h5py.File(path, "r")
    if f.attrs.get("format", b"") not in (b"aptq-quantized-model", "aptq-quantized-model"):
        fail(f"{path}: not an aptq quantized-model file (no format attribute 'aptq-quantized-model')")
    return f


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def export(a):
    f = h5_layers(a.quantized)
    meta = {k: attr_str(v) for k, v in f["meta"].attrs.items()}
    if os.path.exists(a.out) and not a.overwrite:
        fail(f"{a.out} exists; remove it or give --overwrite")
    if meta.get("option.scale_dtype", "fp32") != "fp16" and not a.allow_scale_rounding:
        fail(f"{a.quantized} has fp32 scales; the GPTQ format stores fp16, so the export would not be exact: "
             "quantize with --scale_dtype=fp16, or give --allow-scale-rounding")
    src = source_tensors(a.model)
    names = sorted(f["layers"].keys())
    widths = collections.Counter(int(f["layers"][n].attrs["bits"]) for n in names)
    base_bits = widths.most_common(1)[0][0]
    group_sizes = {int(f["layers"][n].attrs["group_size"]) for n in names}
    syms = {int(f["layers"][n].attrs["sym"]) for n in names}
    if len(group_sizes) != 1 or len(syms) != 1:
        fail("layers differ in group_size or sym; the GPTQ format has one of each")
    group_size, sym = group_sizes.pop(), syms.pop()
    tensors, dynamic = [], {}
    for name in names:
        g = f["layers"][name]
        bits, rows, cols = int(g.attrs["bits"]), int(g.attrs["rows"]), int(g.attrs["cols"])
        per = 32 if bits == 3 else 32 // bits
        if cols % per or rows % per:
            fail(f"{name}: {rows} x {cols} at {bits} bits: the GPTQ packing needs both dimensions divisible by {per}")
        codes = unpack_h5_codes(g["qweight"][()], bits, cols)      # [rows][cols]
        zeros = g["zeros"][()].astype(np.int64)                     # [rows][ngroups]
        scales = g["scales"][()].astype(np.float32)
        g_idx = g["g_idx"][()].astype(np.int32)
        if a.format == "gptq":
            if (zeros == 0).any():
                fail(f"{name}: a zero point of 0 cannot be stored in the GPTQ v1 format (zero − 1); export with --format gptq_v2")
            zeros = zeros - 1
        qweight = pack_rows(codes.T, bits).view(np.int32)          # [cols·bits/32][rows]
        # zeros [rows][ngroups] packed along the output dimension -> [ngroups][rows·bits/32]
        qzeros = pack_rows(zeros & ((1 << bits) - 1), bits).T.copy().view(np.int32)
        tensors += [(f"{name}.qweight", "I32", qweight.shape, qweight.tobytes()),
                    (f"{name}.qzeros", "I32", qzeros.shape, qzeros.tobytes()),
                    (f"{name}.scales", "F16", (scales.shape[1], rows), scales.T.astype("<f2").tobytes()),
                    (f"{name}.g_idx", "I32", g_idx.shape, g_idx.astype("<i4").tobytes())]
        if bits != base_bits:
            dynamic["+:" + name.replace(".", r"\.") + "$"] = {"bits": bits}
        if f"{name}.weight" not in src:
            fail(f"{name}.weight is not in {a.model}; give the model the file was made from")
    quantized = {f"{n}.weight" for n in names}
    for tname in sorted(src):
        if tname in quantized:
            continue
        dt, shape, path, b, e = src[tname]
        with open(path, "rb") as fh:
            fh.seek(b)
            tensors.append((tname, dt, shape, fh.read(e - b)))
    qcfg = {"bits": base_bits, "group_size": group_size if group_size else -1, "desc_act": bool(int(meta.get("option.act_order", "no") == "yes")),
            "sym": bool(sym), "true_sequential": meta.get("option.true_sequential", "yes") == "yes",
            "damp_percent": float(meta.get("option.damp", "0.01")), "static_groups": meta.get("option.static_groups", "no") == "yes",
            "checkpoint_format": a.format, "quant_method": "gptq", "quantizer": "aptq " + attr_str(f.attrs.get("aptq_version", "")),
            "model_fingerprint": meta.get("model_fingerprint", "")}
    if dynamic:
        qcfg["dynamic"] = dynamic
    tmp = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(a.out)) or ".")
    try:
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt", "quantizer": "aptq"})
        cfg = json.load(open(os.path.join(a.model, "config.json")))
        cfg["quantization_config"] = qcfg
        json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"), indent=2)
        json.dump(qcfg, open(os.path.join(tmp, "quantize_config.json"), "w"), indent=2)
        if os.path.exists(a.out):
            shutil.rmtree(a.out)
        os.rename(tmp, a.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"export_gptq: {len(names)} layers ({dict(widths)} by bits), {len(tensors)} tensors, format {a.format}")
    print(f"export_gptq: wrote {a.out}")


def check(a):
    """Dequantize the export as a GPTQ loader does and compare with the HDF5 dequantization."""
    f = h5_layers(a.quantized)
    t = read_safetensors_arrays(os.path.join(a.out, "model.safetensors"))
    qcfg = json.load(open(os.path.join(a.out, "quantize_config.json")))
    dyn = {k[2:].rstrip("$").replace("\\.", "."): v["bits"] for k, v in qcfg.get("dynamic", {}).items()}
    worst, n = 0, 0
    for name in sorted(f["layers"].keys()):
        g = f["layers"][name]
        rows, cols = int(g.attrs["rows"]), int(g.attrs["cols"])
        bits = dyn.get(name, qcfg["bits"])
        if bits != int(g.attrs["bits"]):
            fail(f"{name}: export says {bits} bits, the file {int(g.attrs['bits'])}")
        q = unpack_rows(t[f"{name}.qweight"][1].view(np.uint32), bits, cols)                 # [cols][rows]
        z = unpack_rows(t[f"{name}.qzeros"][1].view(np.uint32).T.copy(), bits, rows).T       # [ngroups][rows]
        if qcfg["checkpoint_format"] == "gptq":
            z = z + 1
        s = t[f"{name}.scales"][1].astype(np.float32)                                        # [ngroups][rows]
        gi = t[f"{name}.g_idx"][1].astype(np.int64)
        w_export = (s[gi, :] * (q - z[gi, :]).astype(np.float32)).T                          # [rows][cols]
        codes = unpack_h5_codes(g["qweight"][()], int(g.attrs["bits"]), cols)
        sc, zr, gh = g["scales"][()].astype(np.float32), g["zeros"][()].astype(np.int64), g["g_idx"][()].astype(np.int64)
        w_h5 = sc[:, gh] * (codes - zr[:, gh]).astype(np.float32)
        diff = np.abs(w_export - w_h5).max()
        worst = max(worst, diff)
        n += 1
    print(f"round trip: {n} layers, max |dequantized export - HDF5 weights| = {worst:.3g}")
    if worst != 0:
        sys.exit(1)
    print("round trip: PASSED (bit-identical)")


def autogptq_pack_reference(intweight, bits):
    """AutoGPTQ QuantLinear.pack's loop over rows, transcribed as written there."""
    intweight = intweight.astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + (32 // bits)):
                qweight[row] |= intweight[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        else:
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << 30
            row += 1
            qweight[row] |= (intweight[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << 31
            row += 1
            qweight[row] |= (intweight[i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    return qweight


def selftest():
    ok = pack_rows(np.arange(1, 9).reshape(8, 1), 4)[0, 0] == 0x87654321
    rng = np.random.default_rng(5)
    for bits in (2, 3, 4, 8):
        v = rng.integers(0, 1 << bits, size=(64, 5))
        p = pack_rows(v, bits)
        ok &= np.array_equal(p, autogptq_pack_reference(v, bits)) and np.array_equal(unpack_rows(p, bits, 64), v)
    print("packing selftest:", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    p.add_argument("--selftest", action="store_true", help="packing against AutoGPTQ's loop, and unpacking")
    p.add_argument("args", nargs="*")
    p.add_argument("--format", choices=["gptq", "gptq_v2"], default="gptq")
    p.add_argument("--allow-scale-rounding", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    if a.selftest:
        selftest()
    if a.check:
        if len(a.args) != 2:
            fail("usage: export_gptq.py --check OUT_DIR QUANTIZED.h5")
        a.out, a.quantized = a.args
        check(a)
    else:
        if len(a.args) != 3:
            fail("usage: export_gptq.py QUANTIZED.h5 MODEL_DIR OUT_DIR")
        a.quantized, a.model, a.out = a.args
        export(a)


if __name__ == "__main__":
    main()
