#!/usr/bin/python3
"""A Qwen2 or Qwen3 checkpoint for the tests, made from a LLaMA one
(wt2-llama-s) in the real Hugging Face layout: OUT/config.json and one
OUT/model.safetensors written here (a JSON header and the raw tensors).

  make_qwen.py SRC OUT qwen2
      model_type qwen2; SRC's tensors unchanged, plus nonzero biases
      model.layers.N.self_attn.{q,k,v}_proj.bias (seeded, half of
      the projection's typical output for q and k, 0.3 of it for v).
  make_qwen.py SRC OUT qwen2 tied
      the same with tie_word_embeddings true and no lm_head.weight tensor,
      as small Qwen2.5 checkpoints (0.5B, 1.5B, 3B) ship: the output
      projection is model.embed_tokens.weight (SRC's input embeddings).
  make_qwen.py SRC OUT qwen3 HEAD_DIM
      model_type qwen3 with an explicit head_dim (HEAD_DIM > SRC's, so that
      it differs from hidden_size / num_attention_heads): each head of q, k
      and v keeps SRC's rows in its two RoPE halves and gets HEAD_DIM -
      head_dim seeded small rows (o_proj the matching columns);
      rope_theta = theta^(HEAD_DIM / head_dim) keeps SRC's frequencies on
      SRC's pairs; q_norm / k_norm weights (head_dim HEAD_DIM) are the
      projection's typical per-head RMS (estimated from the weights) times
      seeded factors in [0.8, 1.2], q's also times (HEAD_DIM/head_dim)^(1/2)
      for the attention scale, so the model stays close to SRC's.

Everything is seeded: the same files every run. Never writes under SRC."""
import json
import os
import struct
import sys

import numpy as np

DT = {"F32": ("<f4", 4), "BF16": ("<u2", 2), "F16": ("<f2", 2)}


def read_raw(path):
    """{name: (dtype, shape, bytes)} of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], list(info["shape"]), raw[8 + n + b:8 + n + e])
    return out


def to_f32(t):
    dtype, shape, data = t
    if dtype == "BF16":
        a = (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        a = np.frombuffer(data, DT[dtype][0]).astype(np.float32)
    return a.reshape(shape)


def from_f32(a, dtype):
    """float32 array to a tensor of dtype (BF16 rounded to nearest even)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "BF16":
        u = a.view(np.uint32).astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        return ("BF16", list(a.shape), u.tobytes())
    return (dtype, list(a.shape), a.astype(DT[dtype][0]).tobytes())


def write_safetensors(path, tensors):
    """tensors: {name: (dtype, shape, bytes)}, written in name order."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name in sorted(tensors):
            f.write(tensors[name][2])
    os.replace(tmp, path)


def load(src):
    idx = os.path.join(src, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    t = {}
    for name in files:
        t.update(read_raw(os.path.join(src, name)))
    return t


def typical_rms(w, g):
    """RMS of a row of W x for x = g * (unit-variance, independent)."""
    return float(np.sqrt(np.mean(np.sum((w * g[None, :]) ** 2, axis=1))))


def qwen2(cfg, t, rng):
    cfg.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], use_sliding_window=False, sliding_window=None,
               max_window_layers=cfg["num_hidden_layers"])
    for key in ("attention_bias", "mlp_bias", "pretraining_tp"):
        cfg.pop(key, None)
    dtype = t["model.embed_tokens.weight"][0]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        g = to_f32(t[p + "input_layernorm.weight"])
        for proj, frac in (("q_proj", 0.5), ("k_proj", 0.5), ("v_proj", 0.3)):
            w = to_f32(t[p + "self_attn." + proj + ".weight"])
            b = frac * typical_rms(w, g) * rng.standard_normal(w.shape[0])
            t[p + "self_attn." + proj + ".bias"] = from_f32(b, dtype)


def tie(cfg, t):
    """Qwen2.5's small checkpoints: no lm_head tensor, the embedding reused."""
    cfg["tie_word_embeddings"] = True
    del t["lm_head.weight"]


def widen_heads(w, nheads, hd, new, rng, scale, axis):
    """Rows (axis 0) or columns (axis 1) of each head: [lo half, extra, hi half, extra]."""
    if axis == 1:
        return widen_heads(w.T, nheads, hd, new, rng, scale, 0).T
    half, extra = hd // 2, (new - hd) // 2
    heads = w.reshape(nheads, hd, -1)
    pad = lambda: scale * rng.standard_normal((nheads, extra, w.shape[1]))
    out = np.concatenate([heads[:, :half], pad(), heads[:, half:], pad()], axis=1)
    return out.reshape(nheads * new, -1)


def qwen3(cfg, t, rng, new):
    L, H, KV = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // H
    if new <= hd or new % 2 or (new - hd) % 2:
        raise SystemExit("make_qwen.py: HEAD_DIM must be even and larger than %d by an even number" % hd)
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    cfg.update(model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=new, attention_bias=False,
               use_sliding_window=False, sliding_window=None, max_window_layers=L,
               rope_parameters={"rope_type": "default", "rope_theta": float(theta) ** (new / hd)})
    for key in ("mlp_bias", "pretraining_tp", "rope_theta", "rope_scaling"):
        cfg.pop(key, None)
    dtype = t["model.embed_tokens.weight"][0]
    for l in range(L):
        p = "model.layers.%d.self_attn." % l
        g = to_f32(t["model.layers.%d.input_layernorm.weight" % l])
        for proj, n in (("q_proj", H), ("k_proj", KV), ("v_proj", KV)):
            w = to_f32(t[p + proj + ".weight"])
            small = 0.1 * float(np.sqrt(np.mean(w * w)))
            w = widen_heads(w, n, hd, new, rng, small, 0)
            t[p + proj + ".weight"] = from_f32(w, dtype)
            if proj != "v_proj":
                boost = np.sqrt(new / hd) if proj == "q_proj" else 1.0
                norm = boost * typical_rms(w, g) * rng.uniform(0.8, 1.2, new)
                t[p + proj[0] + "_norm.weight"] = from_f32(norm, dtype)
        wo = to_f32(t[p + "o_proj.weight"])
        small = 0.1 * float(np.sqrt(np.mean(wo * wo)))
        t[p + "o_proj.weight"] = from_f32(widen_heads(wo, H, hd, new, rng, small, 1), dtype)


def main(argv):
    tied = argv[2:] == ["qwen2", "tied"]
    if len(argv) < 3 or argv[2] not in ("qwen2", "qwen3") or (argv[2] == "qwen3" or tied) != (len(argv) == 4):
        raise SystemExit(__doc__)
    src, out, family = argv[0], argv[1], argv[2]
    cfg = json.load(open(os.path.join(src, "config.json")))
    t = load(src)
    rng = np.random.default_rng(2018)
    if family == "qwen2":
        qwen2(cfg, t, rng)
        if tied:
            tie(cfg, t)
    else:
        qwen3(cfg, t, rng, int(argv[3]))
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), t)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
