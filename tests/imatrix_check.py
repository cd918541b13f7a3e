#!/usr/bin/python3
"""llama.cpp's importance matrix (tests/gguf_logprobs.c imatrix, llama-imatrix's
collector) against the sum of squared activations computed independently.

  imatrix_check.py --llama DIR --model MODEL_DIR --f32 F32.gguf
                   --tokens T.u32 --nseq N --seqlen T --work DIR

DIR holds gguf_logprobs (tests/gguf_llama.sh). F32.gguf is `aptq export` of
MODEL_DIR without a quantized file (any mlp_block). Checks, one line each on
stdout:
  imatrix    llama.cpp evaluates the first N sequences of T tokens of T.u32
             on F32.gguf with the eval callback and writes its imatrix GGUF;
             for every linear layer, in_sum2 / counts (what llama_model_quantize
             weighs column j with) equals, within RTOL, the mean over the same
             tokens of x_j^2, x the layer's input in the float64 forward pass
             of tests/ref/llama_ref.py (rmsnorm output for q/k/v and gate/up,
             the attention output for o_proj, silu(gate)*up for down_proj),
             counts = N*T, and the padded MLP columns are 0. That mean is
             diag(X X^T)/(N*T): GPTQ's Hessian 2 X X^T/(N*T) of the same
             full-precision inputs, halved;
  quantize   llama_model_quantize to Q4_K (pure) with that imatrix and
             without: the two files differ (the imatrix is used), and both
             load in llama.cpp, their perplexities on the first 2 x T tokens
             of T.u32 within PPL_RTOL of the F32 file's.
RTOL: llama.cpp keeps the KV cache in F16 and sums in float; measured on
wt2-llama-s (4 x 256 Brown tokens) the largest relative difference over all
columns is 4.9e-4 (RTOL 5e-3; docs/gguf.md), and the same from the next 4
sequences instead (other tokens) 1.2: a wrong input differs by far more.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import llama_ref as ref  # noqa: E402

RTOL = 5e-3  # relative, per column, against max(value, 1e-3 * the layer's mean)
PPL_RTOL = 0.05

GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"imatrix_check: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def sumsq(c, W, seqs):
    """{gguf name: sum over tokens of x_j^2} of every linear layer's input x,
    the float64 forward pass of llama_ref.forward (same steps, inputs kept)."""
    out = {}

    def add(l, proj, x):
        k = f"blk.{l}.{GGUF[proj]}.weight"
        out[k] = out.get(k, 0.0) + (x * x).sum(axis=0)

    H, KV, hd, eps = c["heads"], c["kv_heads"], c["head_dim"], c["eps"]
    for tokens in seqs:
        T = len(tokens)
        x = W["embed"][tokens]
        cos, sin = ref.rope_tables(T, hd, c["theta"], c.get("scaling"))
        mask = ref.causal_mask(T, c.get("window"))
        for l in range(c["layers"]):
            p = "model.layers.%d." % l
            h = ref.rmsnorm(x, W[p + "input_layernorm"], eps)
            for n in ref.PROJS[:3]:
                add(l, n, h)
            q, k, v = (h @ W[p + n].T for n in ref.PROJS[:3])
            q = ref.apply_rope(q.reshape(T, H, hd).transpose(1, 0, 2), cos, sin, c["rope"])
            k = ref.apply_rope(k.reshape(T, KV, hd).transpose(1, 0, 2), cos, sin, c["rope"])
            k = np.repeat(k, H // KV, axis=0)
            v = np.repeat(v.reshape(T, KV, hd).transpose(1, 0, 2), H // KV, axis=0)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            o = ((e / e.sum(axis=-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(T, H * hd)
            add(l, "self_attn.o_proj", o)
            x = x + o @ W[p + "self_attn.o_proj"].T
            h = ref.rmsnorm(x, W[p + "post_attention_layernorm"], eps)
            add(l, "mlp.gate_proj", h)
            add(l, "mlp.up_proj", h)
            g, u = h @ W[p + "mlp.gate_proj"].T, h @ W[p + "mlp.up_proj"].T
            a = (g / (1.0 + np.exp(-g))) * u
            add(l, "mlp.down_proj", a)
            x = x + a @ W[p + "mlp.down_proj"].T
    return out


def check_imatrix(a):
    im = os.path.join(a.work, "imatrix.gguf")
    run(a.exe, "imatrix", a.f32, a.tokens, str(a.nseq), str(a.seqlen), im)
    tdir = os.path.join(a.work, "imatrix")
    os.makedirs(tdir, exist_ok=True)
    run(a.exe, "tensors", im, tdir, "all")
    c, W = ref.load_model(a.model)
    W = {k: v.astype(np.float64) for k, v in W.items()}
    ours = sumsq(c, W, ref.load_tokens(a.tokens, a.seqlen, a.nseq))
    ntok = a.nseq * a.seqlen
    worst, ok = 0.0, True
    for name, s in sorted(ours.items()):
        got = np.fromfile(os.path.join(tdir, name + ".in_sum2.f32"), dtype=np.float32).astype(np.float64)
        count = np.fromfile(os.path.join(tdir, name + ".counts.f32"), dtype=np.float32)
        n = len(s)
        if count.size != 1 or count[0] != ntok or got.size < n:
            print(f"imatrix_check: {name}: {got.size} columns, count {count}; expected {n} columns and {ntok}", file=sys.stderr)
            ok = False
            continue
        mean, want = got[:n] / count[0], s / ntok
        rel = np.abs(mean - want) / np.maximum(want, 1e-3 * want.mean())
        worst = max(worst, float(rel.max()))
        ok &= bool(rel.max() <= RTOL) and not np.any(got[n:])  # padded columns: exactly 0
    print(f"imatrix_check: largest relative difference {worst:.2e} over {len(ours)} matrices", file=sys.stderr)
    print(f"imatrix_check imatrix: llama.cpp's mean squared activations of {len(ours)} matrices equal the float64 reference's: {'yes' if ok else 'NO'}")
    return ok, im


def ppl(a, gguf, nseq):
    out = gguf + ".lp"
    run(a.exe, "logprobs", gguf, a.tokens, str(nseq), str(a.seqlen), out)
    return float(np.exp(-np.fromfile(out).mean()))


def check_quantize(a, im):
    with_im, without = os.path.join(a.work, "q4_k-imatrix.gguf"), os.path.join(a.work, "q4_k.gguf")
    run(a.exe, "quantize", a.f32, with_im, "14", im, "pure")
    run(a.exe, "quantize", a.f32, without, "14", "-", "pure")
    differ = open(with_im, "rb").read() != open(without, "rb").read()
    base = ppl(a, a.f32, 2)
    p_im, p_no = ppl(a, with_im, 2), ppl(a, without, 2)
    print(f"imatrix_check: perplexity (2 x {a.seqlen}) F32 {base:.3f}, Q4_K with imatrix {p_im:.3f}, without {p_no:.3f}", file=sys.stderr)
    ok = differ and abs(p_im / base - 1) <= PPL_RTOL and abs(p_no / base - 1) <= PPL_RTOL
    print(f"imatrix_check quantize: Q4_K with and without the imatrix differ and load in llama.cpp, perplexities near F32's: {'yes' if ok else 'NO'}")
    return ok


def main():
    p = argparse.ArgumentParser()
    for k in ("llama", "model", "f32", "tokens", "work"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--nseq", type=int, required=True)
    p.add_argument("--seqlen", type=int, required=True)
    a = p.parse_args()
    a.exe = os.path.join(a.llama, "gguf_logprobs")
    os.environ["LLAMA_LIB_DIR"] = open(os.path.join(a.llama, "libdir")).read().strip()
    os.makedirs(a.work, exist_ok=True)
    ok, im = check_imatrix(a)
    ok = check_quantize(a, im) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
