#!/usr/bin/python3
"""Independent float64 reference for aptq's Fisher sensitivities (src/fisher.c,
docs/mixed.md): s_l = tr(G_l) / (N n_l), G_l the Gauss-Newton Hessian of the
cross-entropy with respect to layer l's weights.

  fisher_ref.py check --model M --tokens S.u32 --seqlen T --nseq N
                      --fisher-nseq F --fisher-probes P --seed K --report R.json
      Recomputes aptq's Hutchinson estimate with the same probes (splitmix64
      streams seeded per layer, sequence and probe; Box-Muller normals;
      sigma = 0.01 rms(W); the perturbed weights rounded to float32 as in C)
      in float64, and compares every layer's allocation_sensitivity in the
      report with it (--rtol).
  fisher_ref.py backward --model M --tokens S.u32 --seqlen T --nseq N
                      --fisher-nseq F --fisher-probes P --seed K --report R.json
      fisher_method = backward: recomputes aptq's estimate with the same
      sampled labels (splitmix64 streams seeded per sequence and label set,
      inverse CDF) by an analytic float64 backward pass written here, and
      checks that backward pass against central finite differences of the
      loss along a random direction of every layer's weights; then compares
      every layer's allocation_sensitivity in the report with it (--rtol).
  fisher_ref.py exact --model M --tokens S.u32 --seqlen T --nseq N --probes P
      The exact trace of every layer from the Jacobians of the logits with
      respect to the layer's outputs (central differences, every output
      element of every token), against the mean of P Hutchinson probes of
      the same kind as aptq's: the estimator is unbiased (|z| < 4).

The forward pass is llama_ref.py's, batched: a perturbation of a layer's
output (B variants) is added where the layer is applied.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import PROJS, apply_rope, causal_mask, load_model, load_tokens, rmsnorm, rope_tables  # noqa: E402

ALPHA = 0.01
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


# ------------------------------------------------------------- aptq's probes
def mix(z):
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & M64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & M64
    return z ^ (z >> 31)


def probe_state(seed, layer, seq, probe):
    """src/fisher.c probe_rng: three splitmix64 steps, each xor-ed with a key."""
    s = seed ^ 0x5851F42D4C957F2D
    for key in (layer, seq, probe):
        s = (s + GOLDEN) & M64
        s = mix(s) ^ key
    return s


def label_state(seed, seq, probe):
    """src/fisher_backward.c label_rng."""
    s = seed ^ 0x2545F4914F6CDD1D
    for key in (seq, probe):
        s = (s + GOLDEN) & M64
        s = mix(s) ^ key
    return s


def uniforms(state, n):
    """rng_uniform n times from a splitmix64 state (src/rng.h), vectorised."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(state) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def normals(state, n):
    """rng_normal n times from a splitmix64 state (src/rng.h), vectorised."""
    with np.errstate(over="ignore"):
        i = np.arange(1, 2 * n + 1, dtype=np.uint64)
        z = np.uint64(state) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.sqrt(-2.0 * np.log(1.0 - u[0::2])) * np.cos(6.283185307179586 * u[1::2])


def selected(nseq, fn):
    f = min(fn, nseq)
    return [j for j in range(nseq) if (j + 1) * f // nseq > j * f // nseq]


# ------------------------------------------------------- batched forward pass
def forward(c, W, tokens, hook=None):
    """Logits [B, T, V] (B = 1 without hook). hook = (layer, proj, delta):
    delta [B, T, rows] is added to that projection's output."""
    T = len(tokens)
    H, KV, hd, eps = c["heads"], c["kv_heads"], c["head_dim"], c["eps"]
    cos, sin = rope_tables(T, hd, c["theta"], c.get("scaling"))
    mask = causal_mask(T, c.get("window"))
    x = W["embed"][tokens][None]
    captured = {}

    def lin(l, name, h):
        y = h @ W["model.layers.%d.%s" % (l, name)].T
        if hook and hook[0] == l and hook[1] == name:
            captured["input"] = h[0]
            y = y + hook[2]
        return y

    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, W[p + "input_layernorm"], eps)
        B = h.shape[0]
        q = lin(l, PROJS[0], h)
        k = lin(l, PROJS[1], h)
        v = lin(l, PROJS[2], h)
        B = max(q.shape[0], k.shape[0], v.shape[0])
        q = np.broadcast_to(q, (B,) + q.shape[1:]).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        k = np.broadcast_to(k, (B,) + k.shape[1:]).reshape(B, T, KV, hd).transpose(0, 2, 1, 3)
        v = np.broadcast_to(v, (B,) + v.shape[1:]).reshape(B, T, KV, hd).transpose(0, 2, 1, 3)
        if c.get("qk_norm"):  # Qwen3Attention: q_norm(q_proj(x).view(..., head_dim)) before RoPE
            q = rmsnorm(q, W[p + "self_attn.q_norm"], eps)
            k = rmsnorm(k, W[p + "self_attn.k_norm"], eps)
        q = apply_rope(q, cos, sin, c["rope"])
        k = np.repeat(apply_rope(k, cos, sin, c["rope"]), H // KV, axis=1)
        v = np.repeat(v, H // KV, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + mask
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)
        z = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, H * hd)
        x = x + lin(l, PROJS[3], z)
        h = rmsnorm(x, W[p + "post_attention_layernorm"], eps)
        g = lin(l, PROJS[4], h)
        u = lin(l, PROJS[5], h)
        x = x + lin(l, PROJS[6], (g / (1.0 + np.exp(-g))) * u)
    return rmsnorm(x, W["norm"], eps) @ W["lm_head"].T, captured


def probs(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logit_variance(p, d):
    """Σ_t Var_{p_t}(d_t) for d [B, T, V]: the Gauss-Newton quadratic form."""
    m = np.sum(p * d, axis=-1, keepdims=True)
    return np.sum(p * (d - m) ** 2, axis=(-1, -2))


def layer_input(c, W, tokens, l, name):
    rows = W["model.layers.%d.%s" % (l, name)].shape[0]
    _, cap = forward(c, W, tokens, (l, name, np.zeros((1, len(tokens), rows))))
    return cap["input"]


# ------------------------------------------------ analytic float64 backward
def rmsnorm_backward(x, w, dy, eps):
    """∂/∂x of Σ dy · rmsnorm(x, w), row by row."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    dot = np.sum(dy * w * x, axis=-1, keepdims=True)
    return r * w * dy - x * r ** 3 * dot / x.shape[-1]


def sampled_labels(p, state):
    """A label per position from p [T, V]: inverse CDF of one uniform each."""
    u = uniforms(state, p.shape[0])
    cum = np.cumsum(p, axis=-1)
    return np.array([min(int(np.searchsorted(cum[t], u[t] * cum[t, -1], side="right")), p.shape[1] - 1)
                     for t in range(p.shape[0])])


def loss_grads(c, W, tok, label_seed):
    """Labels drawn from the model's own softmax (label_seed: the stream's
    state) and {(layer, proj): ∂L/∂W} for L = Σ_t −log p_t(label_t).
    Qwen3's q_norm/k_norm (per head, before RoPE): their backward is
    rmsnorm_backward at the projection's output, the weights' own gradients
    are not needed."""
    T = len(tok)
    H, KV, hd, eps = c["heads"], c["kv_heads"], c["head_dim"], c["eps"]
    rep = H // KV
    cos, sin = rope_tables(T, hd, c["theta"])
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    x = W["embed"][tok]
    saved = []
    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        Wl = [W[p + n] for n in PROJS]
        h = rmsnorm(x, W[p + "input_layernorm"], eps)
        qpre = (h @ Wl[0].T).reshape(T, H, hd).transpose(1, 0, 2)
        kpre = (h @ Wl[1].T).reshape(T, KV, hd).transpose(1, 0, 2)
        qn, kn = qpre, kpre
        if c.get("qk_norm"):
            qn = rmsnorm(qpre, W[p + "self_attn.q_norm"], eps)
            kn = rmsnorm(kpre, W[p + "self_attn.k_norm"], eps)
        q = apply_rope(qn, cos, sin, c["rope"])
        k = np.repeat(apply_rope(kn, cos, sin, c["rope"]), rep, axis=0)
        v = np.repeat((h @ Wl[2].T).reshape(T, KV, hd).transpose(1, 0, 2), rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)
        z = (a @ v).transpose(1, 0, 2).reshape(T, H * hd)
        xmid = x + z @ Wl[3].T
        h2 = rmsnorm(xmid, W[p + "post_attention_layernorm"], eps)
        g, u = h2 @ Wl[4].T, h2 @ Wl[5].T
        sg = 1.0 / (1.0 + np.exp(-g))
        act = g * sg * u
        saved.append((x, h, q, k, v, a, z, xmid, h2, g, u, sg, act, qpre, kpre))
        x = xmid + act @ Wl[6].T
    logits = rmsnorm(x, W["norm"], eps) @ W["lm_head"].T
    pr = probs(logits)
    labels = sampled_labels(pr, label_seed)
    dl = pr.copy()
    dl[np.arange(T), labels] -= 1.0
    dx = rmsnorm_backward(x, W["norm"], dl @ W["lm_head"], eps)
    grads = {}
    for l in reversed(range(c["layers"])):
        p = "model.layers.%d." % l
        Wl = [W[p + n] for n in PROJS]
        x, h, q, k, v, a, z, xmid, h2, g, u, sg, act, qpre, kpre = saved[l]
        grads[l, 6] = dx.T @ act
        dact = dx @ Wl[6]
        du, dg = dact * g * sg, dact * u * sg * (1.0 + g * (1.0 - sg))
        grads[l, 4], grads[l, 5] = dg.T @ h2, du.T @ h2
        dmid = dx + rmsnorm_backward(xmid, W[p + "post_attention_layernorm"], dg @ Wl[4] + du @ Wl[5], eps)
        grads[l, 3] = dmid.T @ z
        dz = (dmid @ Wl[3]).reshape(T, H, hd).transpose(1, 0, 2)
        dv = (a.transpose(0, 2, 1) @ dz).reshape(KV, rep, T, hd).sum(axis=1)
        da = dz @ v.transpose(0, 2, 1)
        ds = a * (da - np.sum(a * da, axis=-1, keepdims=True)) / np.sqrt(hd)
        dq = apply_rope(ds @ k, cos, -sin, c["rope"])
        dk = apply_rope((ds.transpose(0, 2, 1) @ q).reshape(KV, rep, T, hd).sum(axis=1), cos, -sin, c["rope"])
        if c.get("qk_norm"):  # the norms' Jacobians transposed
            dq = rmsnorm_backward(qpre, W[p + "self_attn.q_norm"], dq, eps)
            dk = rmsnorm_backward(kpre, W[p + "self_attn.k_norm"], dk, eps)
        dq, dk, dv = (m.transpose(1, 0, 2).reshape(T, -1) for m in (dq, dk, dv))
        grads[l, 0], grads[l, 1], grads[l, 2] = dq.T @ h, dk.T @ h, dv.T @ h
        dx = dmid + rmsnorm_backward(x, W[p + "input_layernorm"], dq @ Wl[0] + dk @ Wl[1] + dv @ Wl[2], eps)
    return labels, grads


def sampled_loss(logits, labels):
    """Σ_t −log softmax(logits)_t[label_t] for logits [B, T, V]."""
    m = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(logits - m), axis=-1)) + m[..., 0]
    return np.sum(lse - np.take_along_axis(logits, labels[None, :, None], axis=-1)[..., 0], axis=-1)


def fd_check(c, W, tok, labels, grads, seed):
    """Largest relative difference, over the layers, between <∂L/∂W, V> and
    the central difference of the loss along a random direction V."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for l in range(c["layers"]):
        for kk, name in enumerate(PROJS):
            w = W["model.layers.%d.%s" % (l, name)]
            V = rng.standard_normal(w.shape)
            eps = 1e-6 * np.sqrt(np.mean(w ** 2)) / np.sqrt(np.mean(V ** 2))
            x = layer_input(c, W, tok, l, name)
            d = eps * (x @ V.T)
            out, _ = forward(c, W, tok, (l, name, np.stack([d, -d])))
            lp, lm = sampled_loss(out, labels)
            fd = (lp - lm) / (2 * eps)
            an = float(np.sum(grads[l, kk] * V))
            worst = max(worst, abs(fd - an) / max(abs(an), 1e-300))
    return worst


# ------------------------------------------------------------------- commands
def setup(a):
    c, W = load_model(a.model)
    if c.get("qkv_bias"):  # this batched forward is LLaMA/Mistral's and Qwen3's
        raise SystemExit("fisher_ref.py: Qwen2 biases are not implemented here")
    W32 = {k: v.astype(np.float32) for k, v in W.items()}
    W64 = {k: v.astype(np.float64) for k, v in W.items()}
    return c, W32, W64, load_tokens(a.tokens, a.seqlen, a.nseq)


def cmd_check(a):
    c, W32, W64, seqs = setup(a)
    rep = json.load(open(a.report))
    aptq = [layer["allocation_sensitivity"] for layer in rep["layers"]]
    sel = selected(a.nseq, a.fisher_nseq)
    worst, bad = 0.0, 0
    for l in range(c["layers"]):
        for kk, name in enumerate(PROJS):
            w32 = W32["model.layers.%d.%s" % (l, name)]
            sigma = ALPHA * np.sqrt(np.mean(w32.astype(np.float64) ** 2))
            vals = []
            for j in sel:
                tok = seqs[j]
                ref, _ = forward(c, W64, tok)
                p = probs(ref)
                x = layer_input(c, W64, tok, l, name)
                tot = 0.0
                for pr in range(a.fisher_probes):
                    n = normals(probe_state(a.seed, l * len(PROJS) + kk, j, pr), w32.size)
                    wp = (w32 + (sigma * n).astype(np.float32).reshape(w32.shape)).astype(np.float32)
                    dW = wp.astype(np.float64) - w32.astype(np.float64)
                    out, _ = forward(c, W64, tok, (l, name, (x @ dW.T)[None]))
                    tot += float(logit_variance(p, out - ref)[0]) / sigma ** 2
                vals.append(tot / (a.fisher_probes * a.seqlen * w32.size))
            mine = float(np.mean(vals))
            got = aptq[l * len(PROJS) + kk]
            rel = abs(got - mine) / abs(mine)
            worst = max(worst, rel)
            bad += rel > a.rtol
    # the largest difference depends on the machine's float32 rounding: on stderr, not in the compared line
    print("%s fisher check: %d layers, aptq's Hutchinson estimate against float64 with the same probes: %s rtol %g"
          % ("PASS" if bad == 0 else "FAIL", len(aptq), "every layer within" if bad == 0 else "%d layers beyond" % bad, a.rtol))
    print("fisher check: max rel diff %.2e" % worst, file=sys.stderr)
    return 0 if bad == 0 else 1


def cmd_backward(a):
    c, W32, W64, seqs = setup(a)
    rep = json.load(open(a.report))
    aptq = [layer["allocation_sensitivity"] for layer in rep["layers"]]
    sel = selected(a.nseq, a.fisher_nseq)
    nl = c["layers"] * len(PROJS)
    vals = np.zeros((len(sel), nl))
    fd_worst = 0.0
    for i, j in enumerate(sel):
        for pr in range(a.fisher_probes):
            labels, grads = loss_grads(c, W64, seqs[j], label_state(a.seed, j, pr))
            for (l, kk), gw in grads.items():
                vals[i, l * len(PROJS) + kk] += np.sum(gw * gw) / (a.fisher_probes * a.seqlen * gw.size)
            if i == 0 and pr == 0:
                fd_worst = fd_check(c, W64, seqs[j], labels, grads, a.seed)
    mine = vals.mean(axis=0)
    rel = np.abs(np.array(aptq) - mine) / np.abs(mine)
    bad = int(np.sum(rel > a.rtol))
    fd_ok = fd_worst < 1e-5
    print("%s fisher backward: float64 backward pass against central differences of the loss along a random direction, %d layers: %s"
          % ("PASS" if fd_ok else "FAIL", nl, "every layer within rtol 1e-05" if fd_ok else "max rel diff %.2e" % fd_worst))
    print("%s fisher backward: %d layers, aptq's sampled-label estimate against float64 with the same labels: %s rtol %g"
          % ("PASS" if bad == 0 else "FAIL", nl, "every layer within" if bad == 0 else "%d layers beyond" % bad, a.rtol))
    print("fisher backward: finite differences max rel diff %.2e; aptq max rel diff %.2e" % (fd_worst, rel.max()), file=sys.stderr)
    return 0 if bad == 0 and fd_ok else 1


def cmd_exact(a):
    c, W32, W64, seqs = setup(a)
    eps = 1e-4
    zmax, bad, nl = 0.0, 0, 0
    for l in range(c["layers"]):
        for kk, name in enumerate(PROJS):
            w = W64["model.layers.%d.%s" % (l, name)]
            rows, cols = w.shape
            sigma = ALPHA * np.sqrt(np.mean(w ** 2))
            exact, est = 0.0, []
            for j, tok in enumerate(seqs):
                T = len(tok)
                ref, _ = forward(c, W64, tok)
                p = probs(ref)
                x = layer_input(c, W64, tok, l, name)
                # J[s, r]: logits' derivative along output element (s, r), all rows r at once per token s
                M = np.zeros((T, T))
                for r0 in range(0, rows, 32):
                    rs = range(r0, min(rows, r0 + 32))
                    B = len(rs) * T
                    delta = np.zeros((B, T, rows))
                    for i, (r, s) in enumerate((r, s) for r in rs for s in range(T)):
                        delta[i, s, r] = eps
                    plus, _ = forward(c, W64, tok, (l, name, delta))
                    minus, _ = forward(c, W64, tok, (l, name, -delta))
                    J = ((plus - minus) / (2 * eps)).reshape(len(rs), T, T, -1)   # [r, s, t, v]
                    Jc = (J - np.sum(p * J, axis=-1, keepdims=True)) * np.sqrt(p)
                    M += np.einsum("rstv,rutv->su", Jc, Jc)
                exact += float(np.sum((x @ x.T) * M)) / (T * rows * cols)
                dW = np.stack([sigma * normals(probe_state(a.seed, l * len(PROJS) + kk, j, pr), w.size).reshape(w.shape)
                               for pr in range(a.probes)])
                out, _ = forward(c, W64, tok, (l, name, np.einsum("tc,prc->ptr", x, dW)))
                est.extend(logit_variance(p, out - ref) / sigma ** 2 / (T * rows * cols))
            exact /= len(seqs)
            # per-sequence means of the probes: the estimate is their mean
            per = np.array(est).reshape(len(seqs), a.probes)
            mean = per.mean()
            se = np.sqrt(np.sum(per.var(axis=1, ddof=1)) / (a.probes * len(seqs) ** 2))
            z = (mean - exact) / se
            zmax = max(zmax, abs(z))
            bad += abs(z) >= 4
            nl += 1
    print("%s fisher exact: %d layers, Hutchinson mean of %d probes x %d sequences against the exact trace: max |z| %.2f (< 4)"
          % ("PASS" if bad == 0 else "FAIL", nl, a.probes, len(seqs), zmax))
    return 0 if bad == 0 else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("check", "backward", "exact"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--tokens", required=True)
        p.add_argument("--seqlen", type=int, required=True)
        p.add_argument("--nseq", type=int, required=True)
        p.add_argument("--seed", type=int, default=1234)
        if name in ("check", "backward"):
            p.add_argument("--fisher-nseq", type=int, required=True)
            p.add_argument("--fisher-probes", type=int, required=True)
            p.add_argument("--report", required=True)
            p.add_argument("--rtol", type=float, default=1e-2)
        else:
            p.add_argument("--probes", type=int, default=32)
    a = ap.parse_args(argv)
    return {"check": cmd_check, "backward": cmd_backward, "exact": cmd_exact}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
