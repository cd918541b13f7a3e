#!/usr/bin/python3
"""Load a GPTQ-format directory (tools/export_gptq.py) the way GPTQModel or
AutoGPTQ loads it, with their checks transcribed (neither can be installed
here: no PyPI), and compare the decoded weights with the aptq HDF5 file.

usage: gptq_load_check.py gptqmodel|autogptq EXPORT_DIR QUANTIZED.h5

Prints "<consumer>: loads, N layers decode bit for bit" and exits 0, or
"<consumer>: refuses: <the consumer's own error>" and exits 1.

What is transcribed (ModelCloud/GPTQModel, release line 2.x-5.x, and
AutoGPTQ/AutoGPTQ 0.7.x, read with the code search tool):

GPTQModel
  gptqmodel/quantization/config.py
    QuantizeConfig.from_pretrained: the first of quantize_config.json,
      quant_config.json, config.json ("quantization_config") that exists
    from_quant_config: keys lower-cased; checkpoint_format must be one of
      gptq, gptq_v2, marlin, bitblas ("Unknown quantization format");
      quant_method one of gptq, qqq, awq, auto_round; unknown keys ignored;
      sym missing -> True
    __post_init__: bits in [2, 3, 4, 8]; group_size -1 or > 0; damp_percent
      in (0, 1); each dynamic override's bits in [2, 3, 4, 8]; pack_dtype one
      of int64/int32/int16/int8; meta a dict with string keys
    meta_get_versionable / is_quantized_by_v2: meta.quantizer is a list of
      "producer:version"; true only for producer "gptqmodel" at version
      >= MIN_VERSION_WITH_V2 = "0.9.0"
    dynamic_get: "-:" pattern -> module skipped, "+:" (or bare) pattern
      re.match'ed against the module name gives its overrides
  gptqmodel/models/loader.py from_quantized:
      possible_model_basenames gptq_model-{bits}bit-{group_size}g, model
      (.safetensors);
      "if qcfg.format == FORMAT.GPTQ: if not qcfg.sym and not
      qcfg.is_quantized_by_v2(): raise ValueError('Format: Loading of a
      sym=False model with format=gptq is only supported if produced by
      gptqmodel version >= 0.9.0')"; then convert_gptq_v1_to_v2_format
  gptqmodel/nn_modules/qlinear/__init__.py BaseQuantLinear.__init__:
      register_buffers: qweight [in // pack_dtype_bits * bits][out],
      qzeros [ceil(in / group_size)][out // pack_dtype_bits * bits],
      scales [ceil(in / group_size)][out] fp16, g_idx [in] int32
      (group_size -1 means in_features); accelerate's
      set_module_tensor_to_device refuses a checkpoint tensor of another shape
  gptqmodel/utils/model.py convert_gptq_v1_to_v2_format_module: qzeros +=
      0x55555555 (2 bits), 0x11111111 (4), 0x01010101 (8); 3 bits: columns
      0, 1, 2 mod 3 += 0x24924924, 0x92492492, 0x49249249 — with cfg.bits,
      the config's base width, for every module
  TorchQuantLinear.dequantize_weight (v2 zeros, no + 1):
      weight = scales[g_idx] * (unpacked qweight - unpacked qzeros[g_idx])

AutoGPTQ
  auto_gptq/quantization/config.py BaseQuantizeConfig.from_quant_config:
      checkpoint_format one of gptq, marlin, gemm, else "Unknown
      quantization format"; unknown keys (dynamic, meta, lm_head,
      pack_dtype) ignored; __post_init__ bits, group_size, damp_percent as
      above
  auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py QuantLinear: the same
      buffer shapes at the config's bits for every layer (no per-layer
      widths); forward: zeros = unpacked qzeros + 1 (v1)
"""
import json
import math
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import export_gptq as ex  # noqa: E402  (safetensors reader, the HDF5 bitstream reader)


class Refused(Exception):
    pass


def version_tuple(v):
    """packaging.version.parse for plain release numbers (X.Y.Z[...])."""
    m = re.match(r"(\d+(?:\.\d+)*)", v)
    return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)


def read_config(d):
    for fn in ("quantize_config.json", "quant_config.json", "config.json"):
        p = os.path.join(d, fn)
        if os.path.exists(p):
            cfg = json.load(open(p))
            return cfg["quantization_config"] if fn == "config.json" else cfg
    raise Refused("No quantize_config.json, quant_config.json or config.json file was found in the model repository.")


def parse_gptqmodel(raw):
    q = {"quant_method": "gptq", "format": "gptq", "sym": True, "group_size": 128, "bits": 4,
         "damp_percent": 0.01, "desc_act": True, "dynamic": None, "meta": {}, "pack_dtype": "int32"}
    for key, val in raw.items():
        key = key.lower()
        if key == "checkpoint_format":
            if val.lower() not in ("gptq", "gptq_v2", "marlin", "bitblas"):
                raise Refused(f"QuantizeConfig: Unknown quantization format: `{val}`.")
            q["format"] = val.lower()
        elif key == "quant_method":
            if val.lower() not in ("gptq", "qqq", "awq", "auto_round"):
                raise Refused(f"QuantizeConfig: Unknown quantization method: `{val}`.")
            q["quant_method"] = val.lower()
        elif key in q or key in ("static_groups", "true_sequential", "lm_head"):
            q[key] = val
    if q["bits"] not in (2, 3, 4, 8):
        raise Refused("QuantizeConfig: `bits` must be in the set of `[2, 3, 4, 8]`.")
    if q["group_size"] != -1 and q["group_size"] <= 0:
        raise Refused("QuantizeConfig: `group_size` must in the value set of `[-1, 16, 32, 64, 128]`.")
    if not (0 < q["damp_percent"] < 1):
        raise Refused("QuantizeConfig: `damp_percent` must between 0 and 1.")
    if str(q["pack_dtype"]).lower() not in ("int64", "int32", "int16", "int8"):
        raise Refused(f"QuantizeConfig: Unsupported `pack_dtype`: {q['pack_dtype']}")
    if not isinstance(q["meta"], dict) or not all(isinstance(k, str) for k in q["meta"]):
        raise Refused("QuantizeConfig: `meta` must be a dictionary")
    for layer, over in (q["dynamic"] or {}).items():
        if "bits" in over and over["bits"] not in (2, 3, 4, 8):
            raise Refused(f"QuantizeConfig: Layer `{layer}` only support quantization of  `[2, 3, 4, 8]` bits.")
    return q


def parse_autogptq(raw):
    q = {"quant_method": "gptq", "format": "gptq", "sym": True, "group_size": -1, "bits": 4,
         "damp_percent": 0.01, "desc_act": True, "dynamic": None}
    for key, val in raw.items():
        key = key.lower()
        if key == "checkpoint_format":
            if val.lower() not in ("gptq", "marlin", "gemm"):
                raise Refused(f"Unknown quantization format: {val}.")
            q["format"] = val.lower()
        elif key == "quant_method":
            if val.lower() not in ("gptq", "awq", "marlin"):
                raise Refused(f"Unknown quantization method: {val}.")
        elif key in ("bits", "group_size", "damp_percent", "desc_act", "static_groups", "sym", "true_sequential"):
            q[key] = val
    if q["bits"] not in (2, 3, 4, 8):
        raise Refused("only support quantize to [2, 3, 4, 8] bits.")
    if q["group_size"] != -1 and q["group_size"] <= 0:
        raise Refused("unless equal to -1, group_size must greater then 0.")
    if not (0 < q["damp_percent"] < 1):
        raise Refused("damp_percent must between 0 and 1.")
    return q


def is_quantized_by_v2(meta):
    values = meta.get("quantizer")
    values = [] if values is None else values if isinstance(values, list) else [values]
    for val in values:
        parts = val.split(":")
        if len(parts) >= 2 and parts[0].lower() == "gptqmodel":
            return version_tuple(parts[1].lower()) >= version_tuple("0.9.0")
    return False


def module_overrides(dynamic, name):
    for pattern, over in (dynamic or {}).items():
        if pattern.startswith("-:"):
            if re.match(pattern[2:], name):
                return None
        elif re.match(pattern[2:] if pattern.startswith("+:") else pattern, name):
            return over
    return {}


def linear_modules(cfg):
    """(name, in_features, out_features) of the HF LLaMA/Qwen model config.json builds."""
    D, F, H = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or D // H
    shapes = {"self_attn.q_proj": (D, H * hd), "self_attn.k_proj": (D, KV * hd), "self_attn.v_proj": (D, KV * hd),
              "self_attn.o_proj": (H * hd, D), "mlp.gate_proj": (D, F), "mlp.up_proj": (D, F), "mlp.down_proj": (F, D)}
    return [(f"model.layers.{l}.{k}", i, o) for l in range(cfg["num_hidden_layers"]) for k, (i, o) in shapes.items()]


def unpack_torch(packed, bits):
    """TorchQuantLinear / qlinear_cuda_old unpacking along axis 0 of an int32
    array [n·bits/32][m] (arithmetic shifts of int32, as torch does)."""
    p = packed.astype(np.int64)  # sign-extended int32
    if bits in (2, 4, 8):
        wf = np.arange(0, 32, bits, dtype=np.int64)
        v = (p[:, None, :] >> wf[None, :, None]) & ((1 << bits) - 1)
        return v.reshape(-1, p.shape[1])
    wf = np.array([[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0], [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
                   [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]], dtype=np.int64)
    w = p.reshape(p.shape[0] // 3, 3, 1, p.shape[1])
    w = np.broadcast_to(w, (w.shape[0], 3, 12, w.shape[3])) >> wf[None, :, :, None] & 0x7
    w = w.copy()
    w[:, 0, 10] = (w[:, 0, 10] & 0x3) | ((w[:, 1, 0] << 2) & 0x4)
    w[:, 1, 11] = (w[:, 1, 11] & 0x1) | ((w[:, 2, 0] << 1) & 0x6)
    w = w & 0x7
    return np.concatenate([w[:, 0, :11], w[:, 1, 1:12], w[:, 2, 1:11]], axis=1).reshape(-1, p.shape[1])


V1_TO_V2 = {2: 0x55555555, 4: 0x11111111, 8: 0x01010101}
V1_TO_V2_3BIT = (0x24924924, 0x92492492, 0x49249249)


def v1_to_v2(qzeros, bits):
    """convert_gptq_v1_to_v2_format_module on an int32 array (wrapping add)."""
    z = qzeros.astype(np.uint32).copy()
    if bits == 3:
        for k, off in enumerate(V1_TO_V2_3BIT):
            z[:, k::3] += np.uint32(off)
    else:
        z += np.uint32(V1_TO_V2[bits])
    return z.view(np.int32)


def load(consumer, d):
    raw = read_config(d)
    q = parse_gptqmodel(raw) if consumer == "gptqmodel" else parse_autogptq(raw)
    if consumer == "gptqmodel" and q["format"] == "gptq" and not q["sym"] and not is_quantized_by_v2(q["meta"]):
        raise Refused("Format: Loading of a sym=False model with format=gptq is only supported "
                      "if produced by gptqmodel version >= 0.9.0")
    names = [f"gptq_model-{q['bits']}bit-{q['group_size']}g.safetensors", "model.safetensors"]
    path = next((os.path.join(d, n) for n in names if os.path.exists(os.path.join(d, n))), None)
    if path is None:
        raise Refused("Could not find a model in " + d)
    t = ex.read_safetensors_arrays(path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    modules = {}
    for name, fin, fout in linear_modules(cfg):
        over = module_overrides(q["dynamic"], name) if consumer == "gptqmodel" else {}
        if over is None:
            continue
        bits, gs = over.get("bits", q["bits"]), over.get("group_size", q["group_size"])
        gs = fin if gs == -1 else gs
        want = {"qweight": ("I32", (fin // 32 * bits, fout)), "qzeros": ("I32", (math.ceil(fin / gs), fout // 32 * bits)),
                "scales": ("F16", (math.ceil(fin / gs), fout)), "g_idx": ("I32", (fin,))}
        if f"{name}.bias" in t:
            want["bias"] = (t[f"{name}.bias"][0], (fout,))
        for k, (dt, shape) in want.items():
            if f"{name}.{k}" not in t:
                raise Refused(f"{name}.{k} is missing from the checkpoint")
            have_dt, arr = t[f"{name}.{k}"]
            if tuple(arr.shape) != shape or have_dt != dt:
                raise Refused(f'Trying to set a tensor of shape {tuple(arr.shape)} in "{k}" (which has shape {shape}), '
                              f"this looks incorrect. ({name}, {bits} bits)")
        qzeros = t[f"{name}.qzeros"][1]
        if q["format"] == "gptq" and consumer == "gptqmodel":
            qzeros = v1_to_v2(qzeros, q["bits"])  # cfg.bits, as convert_gptq_v1_to_v2_format passes it
        w = unpack_torch(t[f"{name}.qweight"][1], bits)                       # [in][out]
        z = unpack_torch(qzeros.T.copy(), bits).T                              # [groups][out]
        if consumer == "autogptq":
            z = z + 1
        s = t[f"{name}.scales"][1].astype(np.float32)
        g = t[f"{name}.g_idx"][1].astype(np.int64)
        modules[name] = (s[g, :] * (w - z[g, :]).astype(np.float32)).T       # [out][in]
    return modules


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("gptqmodel", "autogptq"):
        sys.exit(__doc__.split("\n\n")[1])
    consumer, d, h5 = sys.argv[1:]
    try:
        modules = load(consumer, d)
    except Refused as e:
        print(f"{consumer}: refuses: {e}")
        sys.exit(1)
    f = h5py.File(h5, "r")
    for name in sorted(f["layers"].keys()):
        g = f["layers"][name]
        rows, cols, bits = int(g.attrs["rows"]), int(g.attrs["cols"]), int(g.attrs["bits"])
        codes = ex.unpack_h5_codes(g["qweight"][()], bits, cols)
        sc, zr, gh = g["scales"][()].astype(np.float32), g["zeros"][()].astype(np.int64), g["g_idx"][()].astype(np.int64)
        ref = sc[:, gh] * (codes - zr[:, gh]).astype(np.float32)
        w = modules[name]
        pad = w.copy()
        pad[:rows, :cols] = 0
        if not np.array_equal(w[:rows, :cols], ref) or pad.any():
            bad = np.argwhere(w[:rows, :cols] != ref)
            print(f"{consumer}: loads, but {name} decodes differently"
                  + (f" at [{bad[0][0]}, {bad[0][1]}]: {w[tuple(bad[0])]} vs {ref[tuple(bad[0])]}" if len(bad) else
                     " (non-zero padding)"))
            sys.exit(2)
    print(f"{consumer}: loads, {len(f['layers'])} layers decode bit for bit")


if __name__ == "__main__":
    main()
