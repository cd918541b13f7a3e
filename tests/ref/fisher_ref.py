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


# ------------------------------------------------------------------- commands
def setup(a):
    c, W = load_model(a.model)
    if c.get("qkv_bias") or c.get("qk_norm"):  # this batched forward is LLaMA/Mistral's
        raise SystemExit("fisher_ref.py: Qwen2 biases and Qwen3 q/k norms are not implemented here")
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
    for name in ("check", "exact"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--tokens", required=True)
        p.add_argument("--seqlen", type=int, required=True)
        p.add_argument("--nseq", type=int, required=True)
        p.add_argument("--seed", type=int, default=1234)
        if name == "check":
            p.add_argument("--fisher-nseq", type=int, required=True)
            p.add_argument("--fisher-probes", type=int, required=True)
            p.add_argument("--report", required=True)
            p.add_argument("--rtol", type=float, default=1e-2)
        else:
            p.add_argument("--probes", type=int, default=32)
    a = ap.parse_args(argv)
    return cmd_check(a) if a.cmd == "check" else cmd_exact(a)


if __name__ == "__main__":
    sys.exit(main())
