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
  OUT/config.json          the source config (intermediate_size padded, see
                           below) + quantization_config
  OUT/quantize_config.json the same quantization config (quantize_config):
                           bits, group_size, desc_act, sym, checkpoint_format,
                           meta.quantizer ["aptq:VERSION"], and "dynamic"
                           per-layer bit widths (mixed precision)

Packing follows AutoGPTQ's QuantLinear.pack: qweight packs 32/bits input
rows per int32 (3 bits: 32 rows in 3 words), qzeros packs along the output
dimension. checkpoint_format "gptq" (v1) stores zero − 1, the AutoGPTQ
convention (a zero point of 0 cannot be stored that way); "gptq_v2" stores
the zeros as they are. The default (--format auto) is v1 for a symmetric
file of one bit width (2, 4 or 8), which every GPTQ loader reads, and v2
otherwise (resolve_format):
GPTQModel refuses an asymmetric v1 checkpoint unless its meta.quantizer
names gptqmodel >= 0.9.0 (gptqmodel/models/loader.py from_quantized,
QuantizeConfig.is_quantized_by_v2), which an aptq export honestly cannot.
docs/operations.md has the table of which consumer loads which variant.
Scales are stored as fp16: the export is exact when the file was made with
scale_dtype = fp16; otherwise it refuses unless --allow-scale-rounding.

GPTQ loaders size their buffers as qweight [in // 32 · bits][out] and
qzeros [groups][out // 32 · bits] (AutoGPTQ QuantLinear, GPTQModel
BaseQuantLinear.register_buffers), so every width must be a multiple of 32.
An MLP width that is not (wt2-llama-s: 688) is padded with zeros to the next
multiple of 32 and of group_size (704 for groups of 32): gate/up_proj get
zero rows, down_proj zero columns (code = zero point: value exactly 0), and
config.json's intermediate_size says the padded width; the model computes the
same function. Other widths that are not multiples of 32 are refused.

usage: export_gptq.py QUANTIZED.h5 MODEL_DIR OUT_DIR [--format auto|gptq|gptq_v2]
                      [--allow-scale-rounding] [--overwrite]
       export_gptq.py --check OUT_DIR QUANTIZED.h5   (round trip: dequantize
                      the export and compare with the HDF5 weights bit for bit)
"""
import argparse
import collections
import json
import os
import hashlib
import math
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
DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "F64": 8, "I64": 8, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read_header(path):
    """A safetensors header, checked as aptq's reader checks it (src/safetensors.c):
    its length within the file, a JSON object, known dtypes, and every
    tensor's offsets inside the data and matching its shape."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                fail(f"{path}: shorter than a safetensors header; the checkpoint is damaged")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                fail(f"{path}: header length {n} runs past the end of the file ({size} bytes); the checkpoint is damaged")
            header = json.loads(f.read(n))
    except OSError as e:
        fail(f"{path}: cannot read it ({e.strerror}); give an intact checkpoint")
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        fail(f"{path}: the safetensors header is not valid JSON; the checkpoint is damaged")
    if not isinstance(header, dict):
        fail(f"{path}: the safetensors header is not a JSON object; the checkpoint is damaged")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(info, dict) and info.get("dtype") in DTYPE_SIZE and isinstance(info.get("shape"), list) \
            and all(isinstance(d, int) and d >= 0 for d in info["shape"]) and isinstance(info.get("data_offsets"), list) \
            and len(info["data_offsets"]) == 2 and all(isinstance(o, int) for o in info["data_offsets"])
        if ok:
            b, e = info["data_offsets"]
            ok = 0 <= b <= e <= size - 8 - n and e - b == int(np.prod(info["shape"], dtype=np.int64)) * DTYPE_SIZE[info["dtype"]]
        if not ok:
            fail(f"{path}: tensor '{name}' has a bad dtype, shape or data_offsets; the checkpoint is damaged")
    return header, 8 + n


def source_tensors(model_dir):
    """{name: (dtype, shape, path, begin, end)} of a single or sharded checkpoint."""
    if not os.path.isdir(model_dir):
        fail(f"{model_dir}: not a directory; give the Hugging Face directory the file was made from")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            files = sorted(set(json.load(open(index))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            fail(f"{index}: not a safetensors index with a weight_map; give an intact checkpoint")
        if not all(isinstance(fn, str) and fn and "/" not in fn for fn in files):
            fail(f"{index}: the weight_map names files outside the directory; give an intact checkpoint")
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
FORMAT_VERSION = 1  # QFILE_FORMAT_VERSION, src/qfile.h


def attr_str(v):
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def attr_int(obj, key, where):
    v = obj.attrs.get(key)
    if v is None or np.ndim(v) != 0 or not np.issubdtype(np.asarray(v).dtype, np.integer):
        fail(f"{where}: attribute '{key}' is missing or not an integer; the file is damaged: quantize again")
    return int(v)


def h5_layers(path):
    """The quantized file opened, with the checks eval makes (src/qfile.c
    qfile_open): HDF5, format aptq-quantized-model, format_version 1, a
    /meta model_fingerprint and a /layers group."""
    import h5py
    if not os.path.isfile(path):
        fail(f"{path}: no such file; give the HDF5 file aptq quantize wrote")
    try:
        f = h5py.File(path, "r")
    except OSError:
        fail(f"'{path}' is not an HDF5 file (or is damaged)")
    if attr_str(f.attrs.get("format", "")) != "aptq-quantized-model":
        fail(f"{path}: not an aptq quantized-model file (no format attribute 'aptq-quantized-model')")
    version = f.attrs.get("format_version")
    if version is None or np.ndim(version) != 0 or not np.issubdtype(np.asarray(version).dtype, np.integer):
        fail(f"{path}: no integer format_version attribute; the file is damaged: quantize again")
    if int(version) != FORMAT_VERSION:
        fail(f"'{path}' has format_version {int(version)}; this export reads version {FORMAT_VERSION}")
    if not isinstance(f.get("meta"), h5py.Group) or "model_fingerprint" not in f["meta"].attrs:
        fail(f"'{path}' has no /meta model_fingerprint")
    if not isinstance(f.get("layers"), h5py.Group):
        fail(f"{path}: no /layers group; the file is damaged: quantize again")
    return f


def model_config(model_dir):
    """config.json read with aptq's defaults (src/model.c parse_config): the
    fields of the fingerprint."""
    path = os.path.join(model_dir, "config.json")
    try:
        cfg = json.load(open(path))
    except OSError as e:
        fail(f"{path}: cannot read the model config ({e.strerror}); give the Hugging Face directory the file was made from")
    except ValueError:
        fail(f"{path}: not valid JSON; give the Hugging Face directory the file was made from")

    if not isinstance(cfg, dict):
        fail(f"{path}: not a JSON object")

    def num(key, default, integer=True, v=None):
        v = cfg.get(key) if v is None else v
        if v is None:
            if default is None:
                fail(f"{path}: missing required key '{key}'")
            return default
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or v <= 0:
            fail(f"{path}: '{key}' must be a positive {'integer' if integer else 'number'}")
        return v

    arch = cfg.get("model_type") or "llama"
    if arch not in ("llama", "mistral", "qwen2", "qwen3"):
        fail(f"{path}: model_type '{arch}' is not supported (supported: llama, mistral, qwen2, qwen3; docs/models.md)")
    c = {k: num(k, None) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")}
    # src/config.c read_sizes: absent num_key_value_heads is MistralConfig's 8, Qwen's 32; null is the heads
    kv_default = 8 if arch == "mistral" and "num_key_value_heads" not in cfg else \
        32 if arch in ("qwen2", "qwen3") and "num_key_value_heads" not in cfg else c["num_attention_heads"]
    c["num_key_value_heads"] = num("num_key_value_heads", kv_default)
    c["max_position_embeddings"] = num("max_position_embeddings", 1 << 20)
    c["head_dim"] = num("head_dim", 128 if arch == "qwen3" else c["hidden_size"] // c["num_attention_heads"])
    # read_biases: Qwen2's q/k/v biases, Qwen3's q/k norms
    c["qkv_bias"], c["qk_norm"] = arch == "qwen2", arch == "qwen3"
    # read_window: Mistral's window (absent: 4096, null: none); Qwen's is refused unless unused
    c["sliding_window"] = 0
    if arch == "mistral":
        c["sliding_window"] = 4096 if "sliding_window" not in cfg else (cfg["sliding_window"] or 0)
    # read_rope / read_scaling: rope_scaling, or rope_parameters, of type linear or llama3
    scaling = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rtype = scaling.get("rope_type") or scaling.get("type") or "default"
    c["rope_scaling"] = None if rtype == "default" else (
        rtype, float(scaling.get("factor", 0)), float(scaling.get("low_freq_factor", 0)) if rtype == "llama3" else 0.0,
        float(scaling.get("high_freq_factor", 0)) if rtype == "llama3" else 0.0,
        int(scaling.get("original_max_position_embeddings", 0)) if rtype == "llama3" else 0)
    c["rms_norm_eps"] = num("rms_norm_eps", 1e-6, integer=False)
    theta = cfg.get("rope_theta")
    if theta is None and isinstance(cfg.get("rope_parameters"), dict):
        theta = cfg["rope_parameters"].get("rope_theta")
    c["rope_theta"] = num("rope_theta", 10000.0, integer=False, v=theta)
    c["tie_word_embeddings"] = cfg.get("tie_word_embeddings") is True
    return c


def model_fingerprint(c, src):
    """src/model.c model_fingerprint: SHA-256 over model_config_json and, for
    each tensor in aptq's order, "name dtype rows cols " and the SHA-256 of
    its stored bytes."""
    cfg = ('{"hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d, '
           '"num_key_value_heads": %d, "head_dim": %d, "vocab_size": %d, "max_position_embeddings": %d, '
           '"rms_norm_eps": %.9g, "rope_theta": %.17g, "rope_interleaved": false, "tie_word_embeddings": %s}') % (
        c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"],
        c["head_dim"], c["vocab_size"], c["max_position_embeddings"], float(np.float32(c["rms_norm_eps"])), float(c["rope_theta"]),
        "true" if c["tie_word_embeddings"] else "false")
    cfg = cfg[:-1]  # model_config_json's optional keys, in its order
    if c["rope_scaling"]:
        cfg += (', "rope_scaling": {"rope_type": "%s", "factor": %.17g, "low_freq_factor": %.17g, "high_freq_factor": %.17g, '
                '"original_max_position_embeddings": %d}') % c["rope_scaling"]
    if c["sliding_window"] > 0:
        cfg += ', "sliding_window": %d' % c["sliding_window"]
    if c["qkv_bias"]:
        cfg += ', "qkv_bias": true'
    if c["qk_norm"]:
        cfg += ', "qk_norm": true'
    cfg += "}"
    D, V = c["hidden_size"], c["vocab_size"]
    tensors = [("model.embed_tokens.weight", V, D)]
    for l in range(c["num_hidden_layers"]):
        tensors += [(f"model.layers.{l}.input_layernorm.weight", 1, D), (f"model.layers.{l}.post_attention_layernorm.weight", 1, D)]
        tensors += [(f"model.layers.{l}.{k}.weight", r, cc) for k, (r, cc) in linear_shapes(c).items()]
        if c["qkv_bias"]:  # src/model.c tensor_list: the q/k/v biases, then the q/k norms
            tensors += [(f"model.layers.{l}.{k}.bias", 1, linear_shapes(c)[k][0]) for k in LINEAR[:3]]
        if c["qk_norm"]:
            tensors += [(f"model.layers.{l}.self_attn.{k}_norm.weight", 1, c["head_dim"]) for k in "qk"]
    tensors.append(("model.norm.weight", 1, D))
    if not c["tie_word_embeddings"]:
        tensors.append(("lm_head.weight", V, D))
    h = hashlib.sha256(cfg.encode())
    codes = {"F32": 0, "F16": 1, "BF16": 2}
    for name, rows, cols in tensors:
        if name not in src:
            fail(f"{name} is not in the model directory; give the Hugging Face directory the file was made from")
        dt, shape, path, b, e = src[name]
        if dt not in codes or shape != ([cols] if rows == 1 else [rows, cols]):
            fail(f"{path}: tensor '{name}' is {dt} {shape}, not what config.json implies; give the model the file was made from")
        with open(path, "rb") as fh:
            fh.seek(b)
            digest = hashlib.sha256(fh.read(e - b)).digest()
        h.update(f"{name} {codes[dt]} {rows} {cols} ".encode())
        h.update(digest)
    return h.hexdigest()


def linear_shapes(c):
    """{LINEAR name: (rows, cols)} (src/model.c linear_shape)."""
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    D, F = c["hidden_size"], c["intermediate_size"]
    return dict(zip(LINEAR, [(q, D), (kv, D), (kv, D), (D, q), (F, D), (F, D), (D, F)]))


def first_difference(a, b):
    """The two hex strings as far as their first difference, in steps of 12
    characters (src/sha256.c sha256_hex_shown)."""
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    end = min(max(len(a), len(b)), (i // 12 + 1) * 12)
    return a[:end], b[:end]


def read_layer(g, name, rows, cols):
    """One layer group checked as qfile_read_linear checks it, and more (the
    GPTQ packing needs the zero points within the bit width): attributes,
    dataset shapes, finite positive scales, zeros in [0, 2^bits), g_idx in
    [0, ngroups). Returns (bits, group_size, sym, codes, scales, zeros, g_idx)."""
    import h5py
    where = f"layer {name}"
    bits, grows, gcols = attr_int(g, "bits", where), attr_int(g, "rows", where), attr_int(g, "cols", where)
    group_size, sym = attr_int(g, "group_size", where), attr_int(g, "sym", where)
    if (grows, gcols) != (rows, cols):
        fail(f"{where} is {grows} x {gcols} but the model needs {rows} x {cols}; wrong model for this file")
    if bits not in (2, 3, 4, 8) or group_size < 0 or sym not in (0, 1):
        fail(f"{where}: bits {bits}, group_size {group_size}, sym {sym} are not a valid quantization; the file is damaged: quantize again")
    ng = cols // group_size + (cols % group_size != 0) if group_size else 1
    wpr = (cols * bits + 31) // 32
    data = {}
    for d, shape, kind in (("qweight", (rows, wpr), "iu"), ("scales", (rows, ng), "f"), ("zeros", (rows, ng), "iu"), ("g_idx", (cols,), "iu")):
        ds = g.get(d)
        if not isinstance(ds, h5py.Dataset) or ds.shape != shape or ds.dtype.kind not in kind:
            fail(f"{where}: dataset '{d}' is missing or has the wrong shape or type (expected {' x '.join(map(str, shape))}); "
                 "the file is damaged: quantize again")
        data[d] = ds[()]
    scales = data["scales"].astype(np.float32)
    bad = np.argwhere(~(np.isfinite(scales) & (scales > 0)))
    if len(bad):
        fail(f"{where}: scale at row {bad[0][0]} group {bad[0][1]} is {scales[tuple(bad[0])]}, not a positive finite number; "
             "the file is damaged: quantize again")
    zeros = data["zeros"].astype(np.int64)
    bad = np.argwhere((zeros < 0) | (zeros >= 1 << bits))
    if len(bad):
        fail(f"{where}: zero point at row {bad[0][0]} group {bad[0][1]} is {zeros[tuple(bad[0])]}, outside [0, {(1 << bits) - 1}] "
             f"for {bits} bits; the file is damaged: quantize again")
    g_idx = data["g_idx"].astype(np.int64)
    bad = np.flatnonzero((g_idx < 0) | (g_idx >= ng))
    if len(bad):
        fail(f"{where}: g_idx[{bad[0]}] = {g_idx[bad[0]]} is outside [0, {ng}); the file is damaged: quantize again")
    codes = unpack_h5_codes(data["qweight"].astype(np.uint32), bits, cols)
    return bits, group_size, sym, codes, scales, zeros, g_idx.astype(np.int32)


def check_inputs(f, a, src, c):
    """What eval checks before it uses a file with a model (qfile_open_model,
    qfile_read_linear), here for every layer at once: the fingerprint of
    MODEL_DIR, and exactly the model's linear layers."""
    want = attr_str(f["meta"].attrs["model_fingerprint"])
    have = model_fingerprint(c, src)
    if want != have:
        w, h = first_difference(want, have)
        fail(f"'{a.quantized}' was made from a different model (fingerprint {w}..., {a.model} {h}...); "
             "give the model it was quantized from")
    expected = {f"model.layers.{l}.{k}" for l in range(c["num_hidden_layers"]) for k in LINEAR}
    names = set(f["layers"].keys())
    if names - expected:
        fail(f"{a.quantized}: /layers holds '{sorted(names - expected)[0]}', not a linear layer of the model; "
             "the file is damaged: quantize again")
    if expected - names:
        fail(f"{a.quantized}: layer {sorted(expected - names)[0]} is missing (its fp16 weight would be exported unquantized); "
             "the file is damaged: quantize again")


def same_path(p, q):
    try:
        return os.path.samefile(p, q)
    except OSError:
        return os.path.realpath(p) == os.path.realpath(q)


def check_output(a):
    """OUT_DIR is a new directory (or, with --overwrite, an export directory
    to replace), never an input or a directory holding one."""
    out = os.path.realpath(a.out)
    for what, p in (("the quantized file", a.quantized), ("the model directory", a.model)):
        r = os.path.realpath(p)
        if out == r or r.startswith(out + os.sep):
            fail(f"output {a.out} is or holds {what} {p}; writing it would destroy the input: choose another output directory")
    if os.path.lexists(a.out):
        if not a.overwrite:
            fail(f"{a.out} exists; remove it or give --overwrite")
        if os.path.islink(a.out) or not os.path.isdir(a.out):
            fail(f"{a.out} exists and is not a directory; the export replaces only a directory: choose another output")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        fail(f"directory {parent} for the output {a.out} does not exist or is not writable; create it first")


def padded_width(width, group_size):
    """The next multiple of 32 and of group_size (0: per channel) at or above
    width: GPTQ loaders need widths divisible by 32 (qweight rows
    in // 32 · bits) and vLLM input widths divisible by group_size
    (GPTQLinearMethod.create_weights)."""
    step = 32 if group_size == 0 else 32 * group_size // math.gcd(32, group_size)
    return -(-width // step) * step


def pad_layer(layer, kind, width, group_size):
    """Zero padding of one MLP layer to `width` hidden units: gate/up_proj
    rows, down_proj columns. Added rows have scale 1, zero point and codes
    2^(bits-1) (a valid v1 zero, and the zero point Marlin assumes for
    symmetric files); added columns take the group col // group_size and, in
    each row, the code equal to that group's zero point. Every added weight
    dequantizes to exactly 0."""
    bits, gs, sym, codes, scales, zeros, g_idx = layer
    rows, cols = codes.shape
    mid = 1 << (bits - 1)
    if kind in ("mlp.gate_proj", "mlp.up_proj") and rows < width:
        extra = width - rows
        codes = np.vstack([codes, np.full((extra, cols), mid, dtype=codes.dtype)])
        scales = np.vstack([scales, np.ones((extra, scales.shape[1]), dtype=scales.dtype)])
        zeros = np.vstack([zeros, np.full((extra, zeros.shape[1]), mid, dtype=zeros.dtype)])
    elif kind == "mlp.down_proj" and cols < width:
        ng = -(-width // gs) if gs else 1
        scales = np.hstack([scales, np.ones((rows, ng - scales.shape[1]), dtype=scales.dtype)])
        zeros = np.hstack([zeros, np.full((rows, ng - zeros.shape[1]), mid, dtype=zeros.dtype)])
        added = np.arange(cols, width) // gs if gs else np.zeros(width - cols, dtype=np.int64)
        g_idx = np.concatenate([g_idx, added.astype(g_idx.dtype)])
        codes = np.hstack([codes, zeros[:, added]])
    return bits, gs, sym, codes, scales, zeros, g_idx


def resolve_format(requested, sym, widths):
    """--format auto: v1 ("gptq") for a symmetric file of one bit width of 2,
    4 or 8, which AutoGPTQ, GPTQModel, transformers and vLLM all read; v2
    ("gptq_v2") otherwise, because GPTQModel refuses asymmetric v1 unless made
    by gptqmodel >= 0.9.0, converts v1 zero points with the base bit width
    only (gptqmodel/utils/model.py convert_gptq_v1_to_v2_format, cfg.bits),
    and at 3 bits adds constants that are not +1 per zero point in AutoGPTQ's
    3-bit layout (convert_gptq_v1_to_v2_format_module: 0x24924924 to word 0
    of each 3-word group, whose zero points start at bits 0, 3, ...)."""
    if requested != "auto":
        return requested
    return "gptq" if sym and len(widths) == 1 and set(widths) <= {2, 4, 8} else "gptq_v2"


def quantize_config(meta, version, fmt, base_bits, group_size, sym, dynamic):
    """The quantization config, as GPTQModel writes it (QuantizeConfig.to_dict:
    bits, dynamic, group_size, desc_act, lm_head, quant_method,
    checkpoint_format, pack_dtype, meta, sym) plus the fields AutoGPTQ's
    BaseQuantizeConfig reads (damp_percent, static_groups, true_sequential).
    meta.quantizer is a list of "tool:version" strings, as GPTQModel writes
    it (meta_set_versionable); it names aptq, never gptqmodel. damp_percent
    goes to the top level only within (0, 1), the range AutoGPTQ, GPTQModel
    and transformers' GPTQConfig accept; it is always in meta."""
    damp = float(meta.get("option.damp", "0.01"))
    static_groups = meta.get("option.static_groups", "no") == "yes"
    true_sequential = meta.get("option.true_sequential", "yes") == "yes"
    q = {"bits": base_bits, "group_size": group_size if group_size else -1,
         "desc_act": meta.get("option.act_order", "no") == "yes", "sym": bool(sym), "lm_head": False,
         "quant_method": "gptq", "checkpoint_format": fmt, "pack_dtype": "int32",
         "true_sequential": true_sequential, "static_groups": static_groups}
    if 0 < damp < 1:
        q["damp_percent"] = damp
    if dynamic:
        q["dynamic"] = dynamic
    q["meta"] = {"quantizer": [f"aptq:{version}"], "damp_percent": damp, "static_groups": static_groups,
                 "true_sequential": true_sequential}
    q["model_fingerprint"] = meta.get("model_fingerprint", "")
    return q


def export(a):
    f = h5_layers(a.quantized)
    meta = {k: attr_str(v) for k, v in f["meta"].attrs.items()}
    check_output(a)
    with_mins = [n for n in sorted(f["layers"].keys()) if "mins" in f["layers"][n]]
    if with_mins:
        fail(f"{a.quantized}: layer {with_mins[0]} has mins (scale * code - min, grid = q4_k | q5_k | q2_k), which the GPTQ "
             "format's scale * (code - zero) with an integer zero cannot hold: export it to GGUF (aptq export), or quantize with "
             "another grid")
    if meta.get("option.scale_dtype", "fp32") != "fp16" and not a.allow_scale_rounding:
        fail(f"{a.quantized} has fp32 scales; the GPTQ format stores fp16, so the export would not be exact: "
             "quantize with --scale_dtype=fp16, or give --allow-scale-rounding")
    src = source_tensors(a.model)
    c = model_config(a.model)
    check_inputs(f, a, src, c)
    shapes = linear_shapes(c)
    names = sorted(f["layers"].keys())
    layers = {}
    for name in names:
        rows, cols = shapes[name.split(".", 3)[3]]
        layers[name] = read_layer(f["layers"][name], name, rows, cols)
    widths = collections.Counter(layers[n][0] for n in names)
    base_bits = widths.most_common(1)[0][0]
    group_sizes = {layers[n][1] for n in names}
    syms = {layers[n][2] for n in names}
    if len(group_sizes) != 1 or len(syms) != 1:
        fail("layers differ in group_size or sym; the GPTQ format has one of each")
    group_size, sym = group_sizes.pop(), syms.pop()
    fmt = resolve_format(a.format, sym, widths)
    F = c["intermediate_size"]
    Fp = padded_width(F, group_size)
    if Fp != F:
        for name in names:
            layers[name] = pad_layer(layers[name], name.split(".", 3)[3], Fp, group_size)
    tensors, dynamic = [], {}
    for name in names:
        bits, _, _, codes, scales, zeros, g_idx = layers[name]
        rows, cols = codes.shape
        if cols % 32 or rows % 32:
            fail(f"{name}: {rows} x {cols}: GPTQ loaders need both widths divisible by 32 (AutoGPTQ and GPTQModel size "
                 "qweight as in // 32 * bits rows), and only the MLP width can be padded; export to GGUF (aptq export) instead")
        if fmt == "gptq":
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
    quantized = {f"{n}.weight" for n in names}
    for tname in sorted(src):
        if tname in quantized:
            continue
        dt, shape, path, b, e = src[tname]
        with open(path, "rb") as fh:
            fh.seek(b)
            tensors.append((tname, dt, shape, fh.read(e - b)))
    qcfg = quantize_config(meta, attr_str(f.attrs.get("aptq_version", "")), fmt, base_bits, group_size, sym, dynamic)
    if Fp != F:
        qcfg["meta"]["intermediate_size_unpadded"] = F
    tmp = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(a.out)) or ".")
    try:
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, {"format": "pt", "quantizer": "aptq"})
        cfg = json.load(open(os.path.join(a.model, "config.json")))
        cfg["intermediate_size"] = Fp
        cfg["quantization_config"] = qcfg
        json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"), indent=2)
        json.dump(qcfg, open(os.path.join(tmp, "quantize_config.json"), "w"), indent=2)
        if os.path.lexists(a.out):  # an earlier export (check_output): moved aside, then removed
            old = tmp + ".old"
            os.rename(a.out, old)
            os.rename(tmp, a.out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, a.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if Fp != F:
        print(f"export_gptq: MLP width {F} padded with zeros to {Fp} (a multiple of 32 and of the group size; the same function)")
    print(f"export_gptq: {len(names)} layers ({dict(widths)} by bits), {len(tensors)} tensors, format {fmt}")
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
        # the export's own widths: the MLP may be padded (export: padded_width)
        pcols = t[f"{name}.g_idx"][1].shape[0]
        prows = t[f"{name}.scales"][1].shape[1]
        q = unpack_rows(t[f"{name}.qweight"][1].view(np.uint32), bits, pcols)                # [cols][rows]
        z = unpack_rows(t[f"{name}.qzeros"][1].view(np.uint32).T.copy(), bits, prows).T      # [ngroups][rows]
        if qcfg["checkpoint_format"] == "gptq":
            z = z + 1
        s = t[f"{name}.scales"][1].astype(np.float32)                                        # [ngroups][rows]
        gi = t[f"{name}.g_idx"][1].astype(np.int64)
        w_export = (s[gi, :] * (q - z[gi, :]).astype(np.float32)).T                          # [rows][cols]
        codes = unpack_h5_codes(g["qweight"][()], int(g.attrs["bits"]), cols)
        sc, zr, gh = g["scales"][()].astype(np.float32), g["zeros"][()].astype(np.int64), g["g_idx"][()].astype(np.int64)
        w_h5 = sc[:, gh] * (codes - zr[:, gh]).astype(np.float32)
        padding = w_export.copy()
        padding[:rows, :cols] = 0
        if (prows, pcols) != (rows, cols) and (prows < rows or pcols < cols or padding.any()):
            fail(f"{name}: the export's padding ({rows} x {cols} -> {prows} x {pcols}) is not all zero")
        diff = np.abs(w_export[:rows, :cols] - w_h5).max()
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
    p.add_argument("--format", choices=["auto", "gptq", "gptq_v2"], default="auto")
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
    try:
        main()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # a malformed input no check above names: still one line, never a traceback
        fail(f"cannot process the input ({type(e).__name__}: {e}); the file is damaged or not what it should be")
