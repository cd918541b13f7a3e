#!/usr/bin/python3
"""Independent numpy reference for the LLaMA forward pass (tests for aptq).

Written from the Hugging Face LlamaForCausalLM semantics (not from aptq's C
code).  All arithmetic is done in float64: weights are loaded at their stored
precision (F32/F16/BF16) and widened to float64, so the reference is the
"exact" forward pass of the stored weights; aptq's float32 result is compared
against it with a relative tolerance.

Supported checkpoints
  * Hugging Face directory: config.json + model.safetensors.index.json/shards
    or a single model.safetensors (F32, F16, BF16).  Rotary embedding uses
    the HF rotate_half convention (pairs (i, i + head_dim/2)).
    RoPE scaling (rope_scaling or rope_parameters: linear, llama3) and
    Mistral's sliding window (model_type mistral, sliding_window) as in
    transformers' modeling_rope_utils.py and masking_utils.py.
    Qwen2 (model_type qwen2: q/k/v_proj biases, models/qwen2/modeling_qwen2.py)
    and Qwen3 (model_type qwen3: q_norm/k_norm, an RMSNorm over head_dim of
    each head after the projection and before RoPE, head_dim 128 when absent,
    models/qwen3/modeling_qwen3.py); their sliding layers are refused.
  * llama2.c .bin checkpoint (Karpathy): interleaved RoPE (pairs (2i, 2i+1)),
    eps 1e-5, theta 10000.

Optionally (--quantized FILE.h5) the seven linear projections of every layer
are replaced by the dequantized weights of an aptq quantized HDF5 file
(scale[g_idx[j]] * (code - zero[g_idx[j]])), read with h5py.

Usage
  llama_ref.py logits --model PATH --tokens FILE.u32 --seqlen T --nseq N
                      --aptq-logits DUMP.f32 [--rtol 1e-3] [--quantized Q.h5]
  llama_ref.py ppl    --model PATH --tokens FILE.u32 --seqlen T --nseq N
                      [--quantized Q.h5]
  llama_ref.py kld    --model PATH --tokens FILE.u32 --seqlen T --nseq N
                      --quantized Q.h5 [--compare Q2.h5] --report EVAL.json
                      [--rtol 1e-4]
      the KL divergence figures of an 'aptq eval' report (quantized and
      compare against the full-precision model, their paired differences)
      recomputed from float64 logits; top-1 agreement within one prediction
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

PROJS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
         "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


# ----------------------------------------------------------------- safetensors
def read_safetensors(path):
    """Return {name: np.ndarray(float32)} parsed by hand."""
    out = {}
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        shape = tuple(info["shape"])
        b, e = info["data_offsets"]
        buf = raw[base + b: base + e]
        if dt == "F32":
            a = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32)
        elif dt == "F64":
            a = np.frombuffer(buf, dtype="<f8").astype(np.float32)
        else:
            raise ValueError("%s: unsupported dtype %s" % (name, dt))
        n = int(np.prod(shape)) if shape else 1
        if a.size != n:
            raise ValueError("%s: size %d != shape %s" % (name, a.size, shape))
        out[name] = a.reshape(shape)
    return out


def load_hf(path):
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    theta = cfg.get("rope_theta")
    if theta is None:
        rp = cfg.get("rope_parameters") or {}
        theta = rp.get("rope_theta", 10000.0)
    mt = cfg.get("model_type")
    mistral = mt == "mistral"
    qwen = mt in ("qwen2", "qwen3")
    # MistralConfig: sliding_window defaults to 4096 (null: none),
    # num_key_value_heads to 8 when absent (null: the attention heads);
    # Qwen2Config/Qwen3Config: num_key_value_heads 32 when absent, and the
    # window only on layers >= max_window_layers with use_sliding_window
    window = cfg.get("sliding_window", 4096) if mistral else None
    kv_default = 8 if mistral and "num_key_value_heads" not in cfg else heads
    if qwen and "num_key_value_heads" not in cfg:
        kv_default = 32
    if qwen and cfg.get("use_sliding_window") and cfg.get("sliding_window", 4096) \
            and cfg.get("max_window_layers", 28) < cfg["num_hidden_layers"]:
        raise SystemExit("reference: Qwen sliding layers not implemented")
    head_dim = cfg.get("head_dim") or hidden // heads
    if mt == "qwen3" and "head_dim" not in cfg:
        head_dim = 128
    c = dict(
        hidden=hidden,
        inter=cfg["intermediate_size"],
        layers=cfg["num_hidden_layers"],
        heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or kv_default,
        head_dim=head_dim,
        vocab=cfg["vocab_size"],
        eps=float(cfg.get("rms_norm_eps", 1e-6)),
        theta=float(theta),
        tied=bool(cfg.get("tie_word_embeddings", False)),
        rope="half",
        scaling=cfg.get("rope_scaling") or cfg.get("rope_parameters"),
        window=window,
        qkv_bias=mt == "qwen2",
        qk_norm=mt == "qwen3",
    )
    idx = os.path.join(path, "model.safetensors.index.json")
    t = {}
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        for shard in sorted(set(wm.values())):
            t.update(read_safetensors(os.path.join(path, shard)))
    else:
        t.update(read_safetensors(os.path.join(path, "model.safetensors")))
    W = {"embed": t["model.embed_tokens.weight"],
         "norm": t["model.norm.weight"]}
    if "lm_head.weight" in t and not c["tied"]:
        W["lm_head"] = t["lm_head.weight"]
    else:
        W["lm_head"] = W["embed"]
    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        W[p + "input_layernorm"] = t[p + "input_layernorm.weight"]
        W[p + "post_attention_layernorm"] = t[p + "post_attention_layernorm.weight"]
        for q in PROJS:
            W[p + q] = t[p + q + ".weight"]
        if c["qkv_bias"]:
            for q in PROJS[:3]:
                W[p + q + ".bias"] = t[p + q + ".bias"]
        if c["qk_norm"]:
            W[p + "self_attn.q_norm"] = t[p + "self_attn.q_norm.weight"]
            W[p + "self_attn.k_norm"] = t[p + "self_attn.k_norm.weight"]
    return c, W


# ------------------------------------------------------------------- llama2.c
def load_llama2c(path):
    raw = open(path, "rb").read()
    dim, hid, L, H, KV, vocab, seq = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    hd = dim // H
    kvd = KV * hd
    pos = [0]

    def take(*shape):
        n = int(np.prod(shape))
        a = data[pos[0]:pos[0] + n]
        if a.size != n:
            raise ValueError("truncated llama2.c checkpoint")
        pos[0] += n
        return a.reshape(shape).astype(np.float32)

    emb = take(vocab, dim)
    rms_att = take(L, dim)
    wq = take(L, dim, dim)
    wk = take(L, kvd, dim)
    wv = take(L, kvd, dim)
    wo = take(L, dim, dim)
    rms_ffn = take(L, dim)
    w1 = take(L, hid, dim)
    w2 = take(L, dim, hid)
    w3 = take(L, hid, dim)
    rms_final = take(dim)
    take(seq, hd // 2)  # freq_cis_real (unused: recomputed)
    take(seq, hd // 2)  # freq_cis_imag
    wcls = emb if shared else take(vocab, dim)
    c = dict(hidden=dim, inter=hid, layers=L, heads=H, kv_heads=KV,
             head_dim=hd, vocab=vocab, eps=1e-5, theta=10000.0,
             tied=shared, rope="interleaved")
    W = {"embed": emb, "norm": rms_final, "lm_head": wcls}
    for l in range(L):
        p = "model.layers.%d." % l
        W[p + "input_layernorm"] = rms_att[l]
        W[p + "post_attention_layernorm"] = rms_ffn[l]
        W[p + "self_attn.q_proj"] = wq[l]
        W[p + "self_attn.k_proj"] = wk[l]
        W[p + "self_attn.v_proj"] = wv[l]
        W[p + "self_attn.o_proj"] = wo[l]
        W[p + "mlp.gate_proj"] = w1[l]
        W[p + "mlp.down_proj"] = w2[l]
        W[p + "mlp.up_proj"] = w3[l]
    return c, W


def load_model(path):
    if os.path.isdir(path):
        return load_hf(path)
    return load_llama2c(path)


# ------------------------------------------------------------ quantized HDF5
def unpack_codes(qweight, bits, cols):
    """Bit-unpack qweight uint32 [rows][nw] (LSB-first bitstream) -> codes."""
    rows, nw = qweight.shape
    q = qweight.astype(np.uint64)
    # bitstream as little-endian 64-bit windows: code j starts at bit s=j*bits
    j = np.arange(cols, dtype=np.int64)
    s = j * bits
    w = s // 32
    off = (s % 32).astype(np.uint64)
    lo = q[:, w]
    w2 = np.minimum(w + 1, nw - 1)
    hi = np.where((w + 1 < nw)[None, :], q[:, w2], np.uint64(0))
    both = lo | (hi << np.uint64(32))
    mask = np.uint64((1 << bits) - 1)
    return ((both >> off[None, :]) & mask).astype(np.int64)


def load_quantized_into(W, h5path):
    import h5py
    with h5py.File(h5path, "r") as f:
        for name in f["layers"]:
            g = f["layers"][name]
            bits = int(g.attrs["bits"])
            cols = int(g.attrs["cols"])
            codes = unpack_codes(g["qweight"][()], bits, cols)
            sc = g["scales"][()].astype(np.float32)
            zr = g["zeros"][()].astype(np.int64)
            gi = g["g_idx"][()].astype(np.int64)
            deq = sc[:, gi] * (codes - zr[:, gi]).astype(np.float32)
            key = name
            if key not in W:
                raise KeyError("quantized layer %s not in model" % name)
            if W[key].shape != deq.shape:
                raise ValueError("%s: shape %s vs %s" % (name, deq.shape, W[key].shape))
            W[key] = deq.astype(np.float32)


# ---------------------------------------------------------------- forward pass
def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def scaled_inv_freq(inv, scaling):
    """transformers' modeling_rope_utils: _compute_linear_scaling_rope_parameters
    and _compute_llama3_parameters applied to the default inverse frequencies."""
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv / factor
    if kind != "llama3":
        raise SystemExit("reference: rope type %r not implemented" % kind)
    lo, hi = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * np.pi / inv
    out = np.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return np.where(medium, (1 - smooth) * out / factor + smooth * out, out)


def causal_mask(T, window=None):
    """-inf where query t may not see key j: j > t, and with a sliding window
    W also j <= t - W (transformers' masking_utils: kv_idx > q_idx - W)."""
    t = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    hide = j > t
    if window:
        hide |= j <= t - window
    return np.where(hide, -np.inf, 0.0)


def rope_tables(T, hd, theta, scaling=None):
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))  # hd/2
    inv = scaled_inv_freq(inv, scaling)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]       # T, hd/2
    return np.cos(ang), np.sin(ang)


def apply_rope(x, cos, sin, mode):
    # x: [nh, T, hd]
    hd = x.shape[-1]
    if mode == "half":
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    xe, xo = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = xe * cos - xo * sin
    out[..., 1::2] = xe * sin + xo * cos
    return out


def forward(c, W64, tokens):
    """tokens: int array [T] -> logits float64 [T, vocab]."""
    T = len(tokens)
    H, KV, hd = c["heads"], c["kv_heads"], c["head_dim"]
    eps = c["eps"]
    x = W64["embed"][tokens]                       # T, hidden
    cos, sin = rope_tables(T, hd, c["theta"], c.get("scaling"))
    mask = causal_mask(T, c.get("window"))
    rep = H // KV
    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, W64[p + "input_layernorm"], eps)
        q, k, v = (h @ W64[p + n].T + W64.get(p + n + ".bias", 0.0) for n in PROJS[:3])
        q = q.reshape(T, H, hd).transpose(1, 0, 2)
        k = k.reshape(T, KV, hd).transpose(1, 0, 2)
        v = v.reshape(T, KV, hd).transpose(1, 0, 2)
        if c.get("qk_norm"):  # Qwen3Attention: q_norm(q_proj(x).view(..., head_dim))
            q = rmsnorm(q, W64[p + "self_attn.q_norm"], eps)
            k = rmsnorm(k, W64[p + "self_attn.k_norm"], eps)
        q = apply_rope(q, cos, sin, c["rope"])
        k = apply_rope(k, cos, sin, c["rope"])
        k = np.repeat(k, rep, axis=0)  # head i uses kv head i // rep
        v = np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = s - s.max(axis=-1, keepdims=True)
        e = np.exp(s)
        a = e / e.sum(axis=-1, keepdims=True)
        o = (a @ v).transpose(1, 0, 2).reshape(T, H * hd)
        x = x + o @ W64[p + "self_attn.o_proj"].T
        h = rmsnorm(x, W64[p + "post_attention_layernorm"], eps)
        g = h @ W64[p + "mlp.gate_proj"].T
        u = h @ W64[p + "mlp.up_proj"].T
        x = x + ((g / (1.0 + np.exp(-g))) * u) @ W64[p + "mlp.down_proj"].T
    x = rmsnorm(x, W64["norm"], eps)
    return x @ W64["lm_head"].T


def load_tokens(path, T, N):
    tok = np.fromfile(path, dtype="<u4")
    if tok.size < T * N:
        raise SystemExit("token file has %d tokens < %d" % (tok.size, T * N))
    return tok[:T * N].astype(np.int64).reshape(N, T)


def setup(a):
    c, W = load_model(a.model)
    if a.quantized:
        load_quantized_into(W, a.quantized)
    W64 = {k: v.astype(np.float64) for k, v in W.items()}
    seqs = load_tokens(a.tokens, a.seqlen, a.nseq)
    if seqs.max() >= c["vocab"]:
        raise SystemExit("token id %d >= vocab %d" % (seqs.max(), c["vocab"]))
    return c, W64, seqs


def nll_sum(logits, seq):
    z = logits[:-1]
    m = z.max(axis=-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=-1)))
    return float(np.sum(lse - z[np.arange(len(seq) - 1), seq[1:]]))


def cmd_ppl(a):
    c, W64, seqs = setup(a)
    tot = 0.0
    for s in seqs:
        tot += nll_sum(forward(c, W64, s), s)
    ppl = float(np.exp(tot / (a.nseq * (a.seqlen - 1))))
    print("perplexity: %.6f" % ppl)
    return 0


def cmd_logits(a):
    c, W64, seqs = setup(a)
    V = c["vocab"]
    N, T = seqs.shape
    dump = np.fromfile(a.aptq_logits, dtype="<f4")
    if dump.size != N * T * V:
        print("FAIL logits: dump has %d floats, expected %d*%d*%d=%d"
              % (dump.size, N, T, V, N * T * V))
        return 1
    dump = dump.reshape(N, T, V).astype(np.float64)
    maxdiff = 0.0
    maxref = 0.0
    agree = 0
    nonfinite = int(np.sum(~np.isfinite(dump)))
    tot = 0.0
    tot_aptq = 0.0
    for i, s in enumerate(seqs):
        ref = forward(c, W64, s)
        d = dump[i]
        maxdiff = max(maxdiff, float(np.nanmax(np.abs(ref - d))) if nonfinite == 0
                      else float("inf"))
        maxref = max(maxref, float(np.abs(ref).max()))
        agree += int(np.sum(ref.argmax(-1) == d.argmax(-1)))
        tot += nll_sum(ref, s)
        tot_aptq += nll_sum(d, s)
    ok = nonfinite == 0 and maxdiff <= a.rtol * max(1.0, maxref)
    denom = N * (T - 1)
    print("%s logits: model=%s N=%d T=%d vocab=%d max|diff|=%.3e max|ref|=%.4f "
          "rel=%.3e argmax_agree=%d/%d (%.4f%%) ppl_ref=%.6f ppl_aptq=%.6f rtol=%g%s"
          % ("PASS" if ok else "FAIL", a.model, N, T, V, maxdiff, maxref,
             maxdiff / max(maxref, 1e-30), agree, N * T, 100.0 * agree / (N * T),
             np.exp(tot / denom), np.exp(tot_aptq / denom), a.rtol,
             (" nonfinite=%d" % nonfinite) if nonfinite else ""))
    return 0 if ok else 1


# ------------------------------------------------------------ KL divergence
def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


def token_figures(ref, lg, seq):
    """Per prediction t < T-1: KL(P_ref || P), top-1 agreement, NLL."""
    lp, lq = log_softmax(ref[:-1]), log_softmax(lg[:-1])
    kld = np.sum(np.exp(lp) * (lp - lq), axis=-1)
    same = ref[:-1].argmax(-1) == lg[:-1].argmax(-1)
    nll = -lq[np.arange(len(seq) - 1), seq[1:]]
    return kld, same, nll


def mean_se(v):
    """Mean and llama.cpp's standard error sqrt(var/(n-1)) (0 for n <= 10)."""
    n = len(v)
    var = float(np.var(v))
    return float(np.mean(v)), (np.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def kld_figures(kld, same, nll, nseq):
    n = len(kld)
    m, se = mean_se(kld)
    top = float(np.mean(same))
    return {"kl_divergence": m, "kl_divergence_stderr": se,
            "kl_divergence_p99": float(np.percentile(kld, 99.0)),
            "top1_agreement": top,
            "top1_agreement_stderr": float(np.sqrt(top * (1 - top) / (n - 1))),
            "perplexity": float(np.exp(np.mean(nll))),
            "kl_divergence_per_sequence": kld.reshape(nseq, -1).mean(axis=1)}


def paired(fa, fb):
    """compare - quantized: mean KLD difference and perplexity difference
    with llama.cpp's uncertainties (ppl * se(nll) and their covariance)."""
    kd, kd_se = mean_se(fb[0] - fa[0])
    a, b = fa[2], fb[2]
    n = len(a)
    pa, pb = np.exp(np.mean(a)), np.exp(np.mean(b))
    ua, ub = pa * mean_se(a)[1], pb * mean_se(b)[1]
    cov = pa * pb * float(np.mean(a * b) - np.mean(a) * np.mean(b)) / (n - 1)
    return {"kl_divergence": kd, "kl_divergence_stderr": kd_se,
            "perplexity": float(pb - pa),
            "perplexity_stderr": float(np.sqrt(ua * ua + ub * ub - 2 * cov))}


def cmd_kld(a):
    """The KL divergence figures of aptq's eval report against this
    reference: full-precision and quantized logits in float64."""
    c, W = load_model(a.model)
    W64 = {k: v.astype(np.float64) for k, v in W.items()}
    seqs = load_tokens(a.tokens, a.seqlen, a.nseq)
    files = [a.quantized] + ([a.compare] if a.compare else [])
    models = []
    for path in files:
        Wq = dict(W)  # load_quantized_into replaces the projections' entries
        load_quantized_into(Wq, path)
        models.append({k: v.astype(np.float64) for k, v in Wq.items()})
    figs = [[[], [], []] for _ in files]
    nll_fp = []
    for s in seqs:
        ref = forward(c, W64, s)
        nll_fp.append(-log_softmax(ref[:-1])[np.arange(len(s) - 1), s[1:]])
        for m, f in zip(models, figs):
            for acc, v in zip(f, token_figures(ref, forward(c, m, s), s)):
                acc.append(v)
    figs = [[np.concatenate(x) for x in f] for f in figs]
    n = len(figs[0][0])
    want = {"full_precision_perplexity": float(np.exp(np.mean(np.concatenate(nll_fp))))}
    for key, v in kld_figures(*figs[0], a.nseq).items():
        want[key] = v
    if a.compare:
        for key, v in kld_figures(*figs[1], a.nseq).items():
            want["compare/" + key] = v
        for key, v in paired(figs[0], figs[1]).items():
            want["difference/" + key] = v
    got = json.load(open(a.report))
    ok = True
    for key, v in want.items():
        node = got
        for part in key.split("/"):
            node = node[part]
        node, v = np.asarray(node, dtype=np.float64), np.asarray(v, dtype=np.float64)
        # a difference is as exact as the figures it is the difference of
        base = key.replace("difference/", "")
        scale = max(float(np.max(np.abs(v))), abs(want[base]) if key.startswith("difference/") and base in want else 0.0)
        tol = a.rtol * scale + 1e-12
        # top-1 agreement may differ by a near-tie flipped by float32 rounding
        if "top1_agreement" in key:
            tol += 1.0 / n
        err = float(np.max(np.abs(node - v))) if node.shape == v.shape else float("inf")
        good = err <= tol
        ok &= good
        print("%s %s max|aptq - reference| %.3g (tolerance %.3g)" % ("ok" if good else "MISMATCH", key, err, tol),
              file=sys.stderr)
    print("%s kl divergence: %d figures of %d predictions within rtol %g of the float64 reference"
          % ("PASS" if ok else "FAIL", len(want), n, a.rtol))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("kld")
    for arg in ("--model", "--tokens", "--quantized", "--report"):
        p.add_argument(arg, required=True)
    p.add_argument("--seqlen", type=int, required=True)
    p.add_argument("--nseq", type=int, required=True)
    p.add_argument("--compare", default=None)
    p.add_argument("--rtol", type=float, default=1e-4)
    for name in ("logits", "ppl"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--tokens", required=True)
        p.add_argument("--seqlen", type=int, required=True)
        p.add_argument("--nseq", type=int, required=True)
        p.add_argument("--quantized", default=None,
                       help="aptq quantized HDF5: use its dequantized weights")
        if name == "logits":
            p.add_argument("--aptq-logits", required=True)
            p.add_argument("--rtol", type=float, default=1e-3)
    a = ap.parse_args(argv)
    if a.cmd == "kld":
        return cmd_kld(a)
    return cmd_ppl(a) if a.cmd == "ppl" else cmd_logits(a)


if __name__ == "__main__":
    sys.exit(main())
