#!/usr/bin/python3
"""What a real llama.cpp makes of an `aptq export` GGUF file, against aptq.

  gguf_check.py --llama DIR --gguf F.gguf [--h5 F.h5] --logits EVAL.f32
                --tokens T.u32 --text T.txt --nseq N --seqlen T

DIR holds gguf_logprobs (tests/gguf_llama.sh) built against node-llama-cpp
3.21.1's libllama/libggml. Three checks, one line each on stdout:
  tokenizer  llama.cpp's tokenization (llama_tokenize, BOS per line) of the
             first lines of the text equals the token file made from it with
             SentencePiece;
  tensors    every weight matrix of the file decoded by ggml's own to_float
             (ggml-quants.c) equals, bit for bit, the HDF5 layer dequantized
             here (scale * (code - zero), docs/hdf5-schema.md) with q_proj and
             k_proj rows permuted as convert_hf_to_gguf.py's
             LlamaModel.permute does, and zeros where the MLP width is padded
             (with --h5 only);
  log-probs  llama.cpp's per-token log-probabilities of NSEQ sequences
             against those of `aptq eval --logits` on the same weights: mean
             |difference| at most MEAN_TOL nats and perplexities within
             PPL_RTOL. The measured figures go to stderr (they move with the
             CPU variant llama.cpp picks).
Tolerances: llama.cpp multiplies Q4_0/Q4_1/Q8_0 weights with activations it
rounds to 8-bit blocks (Q8_0/Q8_1) and keeps the KV cache in F16, aptq
computes in float32; on wt2-llama-s (4 x 256 WikiText-2 tokens) that gives a
mean |difference| of 0.0103-0.0105 nats and perplexities within 0.04% (docs/gguf.md);
without the q/k permutation the mean |difference| is 1.0 nat and the perplexity 75% higher.
"""
import argparse
import os
import subprocess
import sys

import h5py
import numpy as np

MEAN_TOL = 0.03  # nats, mean |log p_llama - log p_aptq|
PPL_RTOL = 0.005  # relative perplexity difference
TOKENIZE_LINES = 100


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"gguf_check: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def dequantize(g):
    """scale * (code - zero) in float32, minus the min in layers with mins (grid = q4_k | q5_k | q2_k), as aptq's
    qlayer_dequantize does."""
    bits, rows, cols = int(g.attrs["bits"]), int(g.attrs["rows"]), int(g.attrs["cols"])
    qw = np.ascontiguousarray(g["qweight"][...].astype("<u4"))
    # codes packed LSB first across the row's 32-bit words (3 and 6 bits straddle words)
    b = np.unpackbits(qw.view(np.uint8).reshape(rows, -1), axis=1, bitorder="little")[:, : cols * bits]
    codes = (b.reshape(rows, cols, bits).astype(np.int32) << np.arange(bits, dtype=np.int32)).sum(axis=2)
    gi = g["g_idx"][...]
    s, z = g["scales"][...][:, gi], g["zeros"][...][:, gi]
    w = s * (codes - z).astype(np.float32)
    return w - g["mins"][...][:, gi] if "mins" in g else w


def padding(g, cols):
    """What the columns past the layer's own decode to in rows padded to `cols` (export.c, ggml_pad_value): 0, except
    in a layer with mins, where the last group's sub-block holds the code nearest 0, scale * code - min (those columns
    of down_proj multiply padded hidden units, which gate/up's zero rows make exactly 0)."""
    rows, c, gs, bits = int(g.attrs["rows"]), int(g.attrs["cols"]), int(g.attrs["group_size"]), int(g.attrs["bits"])
    y = np.zeros((rows, cols - c), dtype=np.float32)
    if "mins" not in g:
        return y
    s, m = g["scales"][...], g["mins"][...]
    for j in range(c, cols):
        k = j // gs
        if k < s.shape[1]:
            code = np.clip(np.rint(m[:, k] / s[:, k]), 0, (1 << bits) - 1).astype(np.float32)
            y[:, j - c] = s[:, k] * code - m[:, k]
    return y


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (n_head already the kv heads for k)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_tokenizer(a):
    out = os.path.join(a.work, "tokens.u32")
    run(a.exe, "tokenize", a.gguf, a.text, str(TOKENIZE_LINES), out)
    ours = np.fromfile(out, dtype=np.uint32)
    ref = np.fromfile(a.tokens, dtype=np.uint32, count=len(ours))
    ok = len(ours) > 0 and np.array_equal(ours, ref)
    print(f"gguf_check tokenizer: llama.cpp's ids of the first {TOKENIZE_LINES} lines equal the token file's: {'yes' if ok else 'NO'}")
    return ok


def check_tensors(a):
    tdir = os.path.join(a.work, "tensors")
    os.makedirs(tdir, exist_ok=True)
    run(a.exe, "tensors", a.gguf, tdir)
    types = {}
    for line in open(os.path.join(tdir, "types.txt")):
        name, typ, rows, cols = line.split()
        types[name] = (typ, int(rows), int(cols))
    gguf_names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                  "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                  "mlp.down_proj": "ffn_down"}
    count, equal, kinds = 0, 0, {}
    with h5py.File(a.h5, "r") as f:
        heads, kv = int(f["model"].attrs["num_attention_heads"]), int(f["model"].attrs["num_key_value_heads"])
        for lname, g in f["layers"].items():
            parts = lname.split(".")  # model.layers.L.self_attn.q_proj
            tname = f"blk.{parts[2]}.{gguf_names['.'.join(parts[3:])]}.weight"
            w = dequantize(g)
            if parts[-1] == "q_proj":
                w = permute(w, heads)
            elif parts[-1] == "k_proj":
                w = permute(w, kv)
            typ, rows, cols = types[tname]
            y = np.fromfile(os.path.join(tdir, tname + ".f32"), dtype=np.float32).reshape(rows, cols)
            count += 1
            # an MLP width padded to 32 (export.c padded_mlp): our weights, then zeros
            r, c = w.shape
            same = (rows >= r and cols >= c and np.array_equal(y[:r, :c], w) and not y[r:].any()
                    and np.array_equal(y[:r, c:], padding(g, cols) if typ != "f32" else np.zeros((r, cols - c), np.float32)))
            equal += same
            if not same:
                d = np.abs(y[:r, :c] - w).max() if rows >= r and cols >= c else float("inf")
                print(f"gguf_check: {tname} ({typ}) differs from {lname}: max |diff| {d:g}", file=sys.stderr)
            kinds[typ] = kinds.get(typ, 0) + 1
    desc = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
    print(f"gguf_check tensors: {equal} of {count} weight matrices decoded by ggml equal ours bit for bit ({desc})")
    return equal == count


def check_logprobs(a):
    T, n = a.seqlen, a.nseq
    out = os.path.join(a.work, "logprobs.f64")
    env = dict(os.environ, LLAMA_LIB_DIR=open(os.path.join(a.llama, "libdir")).read().strip())
    r = subprocess.run([a.exe, "logprobs", a.gguf, a.tokens, str(n), str(T), out], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"gguf_check: llama.cpp failed on {a.gguf}: {r.stderr.strip()[-2000:]}")
    theirs = np.fromfile(out).reshape(n, T - 1)
    tok = np.fromfile(a.tokens, dtype=np.uint32, count=n * T).reshape(n, T).astype(np.int64)
    ours = np.empty((n, T - 1))
    for s in range(n):  # one sequence at a time: [T][vocab] float32
        z = np.fromfile(a.logits, dtype=np.float32, count=T * a.vocab, offset=s * T * a.vocab * 4).reshape(T, a.vocab)
        z = z[:-1].astype(np.float64)
        m = z.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
        ours[s] = z[np.arange(T - 1), tok[s, 1:]] - lse
    d = np.abs(theirs - ours)
    ppl_o, ppl_t = np.exp(-ours.mean()), np.exp(-theirs.mean())
    rel = abs(ppl_t / ppl_o - 1)
    print(f"gguf_check: {os.path.basename(a.gguf)}: mean |dlogp| {d.mean():.5f}, max {d.max():.4f}; perplexity aptq {ppl_o:.4f} "
          f"llama.cpp {ppl_t:.4f} ({100 * rel:.3f}%)", file=sys.stderr)
    ok = d.mean() <= MEAN_TOL and rel <= PPL_RTOL
    print(f"gguf_check log-probs: llama.cpp's per-token log-probabilities of {n} x {T} tokens match aptq eval's (mean |diff| <= "
          f"{MEAN_TOL}, perplexity within {100 * PPL_RTOL:g}%): {'yes' if ok else 'NO'}")
    return ok


def main():
    p = argparse.ArgumentParser()
    for k in ("llama", "gguf", "logits", "tokens", "text"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--h5", help="the quantized file; without it (a full-precision export) the tensors are not compared")
    p.add_argument("--nseq", type=int, required=True)
    p.add_argument("--seqlen", type=int, required=True)
    a = p.parse_args()
    a.exe = os.path.join(a.llama, "gguf_logprobs")
    a.work = a.gguf + ".check"
    os.makedirs(a.work, exist_ok=True)
    a.vocab = os.path.getsize(a.logits) // (4 * a.nseq * a.seqlen)
    ok = check_tokenizer(a)
    if a.h5:
        ok &= check_tensors(a)
    ok &= check_logprobs(a)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
