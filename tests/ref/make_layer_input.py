#!/usr/bin/python3
"""Write a layer-solve input for GPTQ tests: HDF5 with W float32 [rows][cols]
and H float64 [cols][cols] (H = 2/n sum_t x_t x_t^T, n = number of tokens).

  make_layer_input.py --random ROWS COLS --seed S [--dead N] --output OUT.h5
      Random W (N(0, 0.02^2)) and H from correlated random activations X
      (n = 4*COLS tokens, neighbouring columns correlated, uneven column
      scales so that act-order matters).  --dead N zeroes N randomly chosen
      columns of X, i.e. rows/columns of H (dead inputs); their indices are
      stored in the attribute W.attrs['dead_columns'].

  make_layer_input.py --model DIR --tokens FILE.u32 --layer NAME --nseq N
                      --seqlen T [--block L] --output OUT.h5
      W = the weight of projection NAME (q_proj k_proj v_proj o_proj
      gate_proj up_proj down_proj, or with its 'self_attn.'/'mlp.' prefix) of
      decoder block L (default 0) of a Hugging Face LLaMA checkpoint (F32,
      F16 or BF16 safetensors; BF16 widened as uint16<<16).  The forward pass
      (written here in numpy, float64, HF LlamaForCausalLM semantics: RMSNorm
      x*rsqrt(mean(x^2)+eps)*w, RoPE rotate_half with inv_freq
      1/theta^(2i/hd), causal GQA softmax attention, SwiGLU) runs on the
      first N non-overlapping sequences of T tokens of FILE (raw little-endian
      uint32 ids) and collects the inputs X of that projection:
        q/k/v: RMSNorm'd block input; o: attention output before o_proj;
        gate/up: post-attention RMSNorm'd residual; down: silu(gate)*up.
      H = 2/n X^T X accumulated in float64 (n = N*T tokens).  Blocks before L
      are run in full to get block L's input.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

PROJ = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj",
        "v_proj": "self_attn.v_proj", "o_proj": "self_attn.o_proj",
        "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
        "down_proj": "mlp.down_proj"}


# ------------------------------------------------------------ model loading
def st_header(path):
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(hlen).decode("utf-8")), 8 + hlen


def st_tensor(path, name):
    header, base = st_header(path)
    info = header[name]
    b, e = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + b)
        buf = f.read(e - b)
    dt = info["dtype"]
    if dt == "BF16":
        a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dt == "F16":
        a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
    elif dt == "F32":
        a = np.frombuffer(buf, dtype="<f4").astype(np.float32)
    else:
        raise SystemExit("%s: unsupported dtype %s" % (name, dt))
    return a.reshape(info["shape"])


class HFModel:
    def __init__(self, d):
        self.dir = d
        self.cache = {}
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads") or self.heads
        self.head_dim = cfg.get("head_dim") or self.hidden // self.heads
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.vocab = cfg["vocab_size"]
        theta = cfg.get("rope_theta")
        if theta is None:
            theta = (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        self.theta = float(theta)
        # this forward is plain LLaMA: refuse what would change it
        for key in ("rope_scaling", "rope_parameters"):
            rs = cfg.get(key) or {}
            if rs.get("rope_type", rs.get("type", "default")) != "default":
                raise SystemExit("%s: %s: scaled RoPE is not implemented here" % (d, key))
        if cfg.get("model_type", "llama") != "llama":
            raise SystemExit("%s: model_type %s is not implemented here" % (d, cfg["model_type"]))
        idx = os.path.join(d, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                self.where = {k: os.path.join(d, v)
                              for k, v in json.load(f)["weight_map"].items()}
        else:
            p = os.path.join(d, "model.safetensors")
            self.where = {k: p for k in st_header(p)[0] if k != "__metadata__"}

    def get(self, name):
        """float32 weight as stored (bf16 -> exact float32), cached."""
        if name not in self.cache:
            self.cache[name] = st_tensor(self.where[name], name)
        return self.cache[name]


# ------------------------------------------------------------- forward pass
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, cos, sin):
    # x [nh, T, hd], HF rotate_half: pairs (i, i + hd/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def block_forward(m, L, x, cos, sin, want=None):
    """One decoder block on x [T, hidden] (float64). Returns (x_out, dict of
    projection inputs)."""
    p = "model.layers.%d." % L
    g = lambda n: m.get(p + n).astype(np.float64)
    T = x.shape[0]
    H, KV, hd = m.heads, m.kv_heads, m.head_dim
    ins = {}
    h = rmsnorm(x, g("input_layernorm.weight"), m.eps)
    ins["q_proj"] = ins["k_proj"] = ins["v_proj"] = h
    q = (h @ g("self_attn.q_proj.weight").T).reshape(T, H, hd).transpose(1, 0, 2)
    k = (h @ g("self_attn.k_proj.weight").T).reshape(T, KV, hd).transpose(1, 0, 2)
    v = (h @ g("self_attn.v_proj.weight").T).reshape(T, KV, hd).transpose(1, 0, 2)
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    rep = H // KV                       # query head i uses kv head i // rep
    k = np.repeat(k, rep, axis=0)
    v = np.repeat(v, rep, axis=0)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
    s = s + np.triu(np.full((T, T), -np.inf), k=1)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    att = e / e.sum(axis=-1, keepdims=True)
    o = (att @ v).transpose(1, 0, 2).reshape(T, H * hd)
    ins["o_proj"] = o
    x = x + o @ g("self_attn.o_proj.weight").T
    h = rmsnorm(x, g("post_attention_layernorm.weight"), m.eps)
    ins["gate_proj"] = ins["up_proj"] = h
    gt = h @ g("mlp.gate_proj.weight").T
    up = h @ g("mlp.up_proj.weight").T
    a = gt / (1.0 + np.exp(-gt)) * up
    ins["down_proj"] = a
    x = x + a @ g("mlp.down_proj.weight").T
    return x, ins


def model_input(a):
    name = a.layer.split(".")[-1]
    if name not in PROJ:
        raise SystemExit("--layer must be one of %s" % " ".join(PROJ))
    m = HFModel(a.model)
    tok = np.fromfile(a.tokens, dtype="<u4")
    if tok.size < a.nseq * a.seqlen:
        raise SystemExit("%s has %d tokens < %d" % (a.tokens, tok.size, a.nseq * a.seqlen))
    seqs = tok[:a.nseq * a.seqlen].astype(np.int64).reshape(a.nseq, a.seqlen)
    if seqs.max() >= m.vocab:
        raise SystemExit("token id %d >= vocab %d" % (seqs.max(), m.vocab))
    W = m.get("model.layers.%d.%s.weight" % (a.block, PROJ[name])).astype(np.float32)
    emb = m.get("model.embed_tokens.weight")
    hd = m.head_dim
    inv = 1.0 / (m.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.arange(a.seqlen, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    cols = W.shape[1]
    H = np.zeros((cols, cols))
    for s in seqs:
        x = emb[s].astype(np.float64)
        for L in range(a.block + 1):
            x, ins = block_forward(m, L, x, cos, sin)
        X = ins[name]
        H += X.T @ X
    n = a.nseq * a.seqlen
    H *= 2.0 / n
    return W, H, dict(model=os.path.abspath(a.model), tokens=os.path.abspath(a.tokens),
                      layer="model.layers.%d.%s" % (a.block, PROJ[name]),
                      nseq=a.nseq, seqlen=a.seqlen, ntokens=n)


def random_input(a):
    rows, cols = a.random
    rng = np.random.default_rng(a.seed)
    n = 4 * cols
    X = rng.standard_normal((n, cols))
    X[:, 1:] += 0.6 * X[:, :-1]                   # correlated neighbours
    X += 0.3 * rng.standard_normal((n, 1))        # a shared component
    X *= rng.uniform(0.2, 3.0, cols)              # uneven scales
    dead = np.sort(rng.choice(cols, a.dead, replace=False)) if a.dead else \
        np.zeros(0, dtype=np.int64)
    X[:, dead] = 0.0
    H = 2.0 / n * (X.T @ X)
    W = (0.02 * rng.standard_normal((rows, cols))).astype(np.float32)
    return W, H, dict(seed=a.seed, ntokens=n, dead_columns=dead.astype(np.int32))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True)
    ap.add_argument("--random", type=int, nargs=2, metavar=("ROWS", "COLS"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dead", type=int, default=0)
    ap.add_argument("--model")
    ap.add_argument("--tokens")
    ap.add_argument("--layer")
    ap.add_argument("--block", type=int, default=0)
    ap.add_argument("--nseq", type=int)
    ap.add_argument("--seqlen", type=int)
    a = ap.parse_args(argv)
    if (a.random is None) == (a.model is None):
        ap.error("give exactly one of --random or --model")
    if a.random is not None:
        if min(a.random) < 1 or not 0 <= a.dead <= a.random[1]:
            ap.error("bad --random/--dead sizes")
        W, H, meta = random_input(a)
    else:
        if not (a.tokens and a.layer and a.nseq and a.seqlen):
            ap.error("--model needs --tokens --layer --nseq --seqlen")
        W, H, meta = model_input(a)
    import h5py
    with h5py.File(a.output, "w") as f:
        f["W"] = W.astype(np.float32)
        f["H"] = H.astype(np.float64)
        for k, v in meta.items():
            if k == "dead_columns":
                f["W"].attrs[k] = v
            else:
                f.attrs[k] = v
    print("make_layer_input: W %dx%d H %dx%d mean(diag H)=%.6g -> %s"
          % (W.shape[0], W.shape[1], H.shape[0], H.shape[1],
             float(np.mean(np.diag(H))), a.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
