#!/usr/bin/python3
"""Independent numpy reference of the GPTQ layer solver (tests for aptq).

Written from the IST-DASLab reference implementation (gptq.py
`GPTQ.fasterquant` and quant.py `Quantizer`), NOT from aptq's C code.  It
reproduces that code step by step, including its quirks:

  * per-channel (--group-size 0, the reference's -1): quantizer parameters are
    found once on the whole ORIGINAL W, before dead columns are zeroed;
  * dead columns (diag(H) == 0): H[d,d] = 1, W[:,d] = 0;
  * --static-groups 1: parameters of every group of the dead-zeroed,
    unpermuted W are found up front; in the loop, solve position k uses the
    group of original column perm[k] (act-order) or k;
  * --act-order 1: perm = argsort(-diag(H)) (stable sort, so ties keep their
    original order; torch.argsort gives no such guarantee), W and H permuted;
  * dynamic groups: at solve position k with k % groupsize == 0 the parameters
    are found on W[:, k:k+groupsize] -- the full matrix W, which inside the
    current block is STALE (only the lazy block updates of earlier blocks have
    been applied; the intra-block updates live in the copy W1).  Replicated;
  * damp = percdamp * mean(diag(H)), H += damp*I, Hinv = upper Cholesky
    factor U of H^-1 (H^-1 = U^T U);
  * Losses[:,k] = (w-q)^2 / Hinv[k,k]^2 / 2, error = sum(Losses) (the figure
    gptq.py prints as 'error').

Precision: everything that torch does in float32 is done in float32 here
(W, Hinv, quantizer parameters, quantize, the rank-1 and block updates,
Losses), EXCEPT the damping and the factorisation chain (cholesky ->
cholesky_inverse -> upper cholesky), which is done in float64 (torch does it
in float32; aptq's C code uses float64 via LAPACK/ScaLAPACK) and then cast to
float32.  The final sum of Losses is accumulated in float64.  The hidden
option --dtype float64 runs the whole solve in float64 instead; it exists to
measure how often tiny float differences flip a rounding tie (see the
`selftest` subcommand).

Outputs (HDF5): Q float32 [rows][cols] dequantized, codes int32 [rows][cols]
(original column order), scales float32 [rows][ngroups], zeros int32
[rows][ngroups], g_idx int32 [cols], root attribute error (float64).
ngroups = ceil(cols/groupsize) (1 per-channel).  g_idx follows AutoGPTQ:
g_idx[j] = invperm[j] // groupsize with act-order (the group, in solve order,
of original column j), j // groupsize otherwise and for static groups, 0 for
per-channel.  scales/zeros columns are in group-index order.

Usage
  gptq_ref.py solve   --input IN.h5 --bits B --group-size G --act-order 0|1
                      --sym 0|1 [--static-groups 0|1] [--mse 0|1]
                      [--damp 0.01] [--block-size 128] --output REF.h5
  gptq_ref.py compare --input IN.h5 (same options) --aptq OUT.h5
                      [--min-code-match 0.999] [--error-rtol 1e-4]
  gptq_ref.py selftest --input IN.h5 (same options)
      sensitivity of the solve to float details: code match and error of
      perturbed solves (float64 updates; all float64; fused multiply-add in
      the rank-1 update; group params from the updated W1) vs the reference.
  gptq_ref.py sanity [--seed S]
      checks of the reference itself: H = I gives RTN codes; error falls
      with bits; sum(Losses) equals 1/2 tr((W0-Q) H_damped (W0-Q)^T) in
      float64; dead columns give 0; Q == scale*(code-zero).
IN.h5 holds W float32 [rows][cols] and H float64 [cols][cols]
(tests/ref/make_layer_input.py writes such files).
"""
import argparse
import sys
import time

import numpy as np


# --------------------------------------------------------------- quantizer
class Quantizer:
    """quant.py Quantizer with perchannel=True, per row of x."""

    def __init__(self, bits, sym, mse, dt, norm=2.4, grid=100, maxshrink=0.8):
        self.maxq = dt(2 ** bits - 1)
        self.sym = sym
        self.mse = mse
        self.dt = dt
        self.norm = norm
        self.grid = grid
        self.maxshrink = maxshrink
        self.scale = None
        self.zero = None

    def codes(self, x, scale, zero):
        # quant.py quantize(): q = clamp(round(x/scale) + zero, 0, maxq)
        return np.clip(np.round(x / scale) + zero, 0, self.maxq)

    def quantize(self, x, scale, zero):
        return scale * (self.codes(x, scale, zero) - zero)

    def find_params(self, x):
        dt = self.dt
        x = np.asarray(x, dtype=dt)
        if x.ndim == 1:
            x = x[:, None]
        zeros = np.zeros(x.shape[0], dtype=dt)
        if x.shape[1] == 0:   # cannot happen in fasterquant; guard anyway
            xmin, xmax = zeros.copy(), zeros.copy()
        else:
            xmin = np.minimum(x.min(axis=1), zeros)
            xmax = np.maximum(x.max(axis=1), zeros)
        if self.sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            neg = xmin < 0
            xmin[neg] = -xmax[neg]
        both0 = (xmin == 0) & (xmax == 0)
        xmin[both0] = -1
        xmax[both0] = +1
        scale = ((xmax - xmin) / self.maxq).astype(dt)
        if self.sym:
            zero = np.full_like(scale, (self.maxq + 1) / 2)
        else:
            zero = np.round(-xmin / scale).astype(dt)
        if self.mse:
            best = np.full(x.shape[0], np.inf)
            for i in range(int(self.maxshrink * self.grid)):
                p = dt(1 - i / self.grid)
                xmin1 = p * xmin
                xmax1 = p * xmax
                scale1 = (xmax1 - xmin1) / self.maxq
                zero1 = np.round(-xmin1 / scale1) if not self.sym else zero
                q = self.quantize(x, scale1[:, None], zero1[:, None])
                q -= x
                q = np.abs(q)
                q = q ** dt(self.norm)
                err = np.sum(q, axis=1, dtype=dt)
                better = err < best
                if np.any(better):
                    best[better] = err[better]
                    scale[better] = scale1[better]
                    zero[better] = zero1[better]
        self.scale = scale.astype(dt)
        self.zero = zero.astype(dt)
        return self.scale.copy(), self.zero.copy()


# ------------------------------------------------------------------ solver
def upper_chol_of_inverse(H):
    """U upper triangular with inv(H) = U^T U, in float64
    (torch: cholesky -> cholesky_inverse -> cholesky(upper=True))."""
    L = np.linalg.cholesky(H)                      # raises LinAlgError if not PD
    Linv = np.linalg.inv(L)                        # lower triangular
    Hi = Linv.T @ Linv                             # inverse(H)
    Hi = 0.5 * (Hi + Hi.T)
    return np.linalg.cholesky(Hi).T


def gptq_solve(W, H, bits, groupsize=0, act_order=False, sym=False,
               static_groups=False, mse=False, percdamp=0.01, blocksize=128,
               dtype=np.float32, qdtype=None, fma=False, fresh_groups=False):
    """Returns dict(Q, codes, scales, zeros, g_idx, error, perm).

    dtype: working precision of W, Hinv and the updates (float32 = torch).
    Perturbations used only by `selftest` to measure sensitivity:
      qdtype: precision of the quantizer (default: dtype);
      fma: intra-block rank-1 update rounded once (as a fused multiply-add);
      fresh_groups: dynamic group parameters from W1 (updated) instead of the
        stale W -- NOT gptq.py semantics."""
    dt = dtype
    qdt = qdtype or dtype
    W = np.array(W, dtype=dt)          # copy
    H = np.array(H, dtype=np.float64)  # copy
    rows, cols = W.shape
    if H.shape != (cols, cols):
        raise ValueError("H is %s, expected %dx%d" % (H.shape, cols, cols))
    gs = int(groupsize)
    if gs < 0:
        gs = 0
    if static_groups and gs == 0:
        static_groups = False          # reference: static only with groups
    ngroups = (cols + gs - 1) // gs if gs > 0 else 1
    quant = Quantizer(bits, sym, mse, qdt)
    scales = np.zeros((rows, ngroups), dtype=qdt)
    zeros = np.zeros((rows, ngroups), dtype=qdt)

    # fasterquant: if not quantizer.ready(): find_params(W) on the original W
    if gs == 0:
        s, z = quant.find_params(W)
        scales[:, 0], zeros[:, 0] = s, z

    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    groups = None
    if static_groups:
        groups = []
        for g, i in enumerate(range(0, cols, gs)):
            s, z = quant.find_params(W[:, i:i + gs])
            groups.append((s, z))
            scales[:, g], zeros[:, g] = s, z

    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = np.argsort(perm)
    else:
        perm = np.arange(cols)
        invperm = perm

    damp = percdamp * np.mean(np.diag(H))
    H[np.arange(cols), np.arange(cols)] += damp
    Hinv = upper_chol_of_inverse(H).astype(dt)

    Q = np.zeros_like(W)
    C = np.zeros((rows, cols), dtype=np.int32)   # codes, solve order
    Losses = np.zeros_like(W)
    cur_s, cur_z = quant.scale, quant.zero

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Losses1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i].copy()
            d = Hinv1[i, i]
            k = i1 + i
            if gs > 0:
                if not static_groups:
                    if k % gs == 0:
                        # NOTE: W (stale inside this block), not W1 -- as in
                        # gptq.py
                        src = W[:, k:k + gs]
                        if fresh_groups:
                            src = np.concatenate([W1[:, i:i + gs], W[:, i2:k + gs]], axis=1)
                        cur_s, cur_z = quant.find_params(src)
                        scales[:, k // gs], zeros[:, k // gs] = cur_s, cur_z
                else:
                    idx = perm[k] if act_order else k
                    cur_s, cur_z = groups[idx // gs]
            c = quant.codes(w.astype(qdt), cur_s, cur_z)
            q = (cur_s * (c - cur_z)).astype(dt)
            C[:, k] = c.astype(np.int32)
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            if fma:
                W1[:, i:] = (W1[:, i:].astype(np.float64) - np.outer(
                    err1.astype(np.float64), Hinv1[i, i:].astype(np.float64))).astype(dt)
            else:
                W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        Losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    error = float(np.sum(Losses, dtype=np.float64))
    if act_order:
        Q = Q[:, invperm]
        C = C[:, invperm]
    if gs == 0:
        g_idx = np.zeros(cols, dtype=np.int32)
    elif static_groups:
        g_idx = (np.arange(cols) // gs).astype(np.int32)
    else:
        g_idx = (np.arange(cols) // gs)[invperm].astype(np.int32)
    return dict(Q=Q, codes=C, scales=scales, zeros=zeros.astype(np.int32),
                g_idx=g_idx, error=error, perm=perm.astype(np.int32),
                dead=int(dead.sum()), damp=float(damp))


# --------------------------------------------------------------------- CLI
def load_input(path):
    import h5py
    with h5py.File(path, "r") as f:
        W = f["W"][()]
        H = f["H"][()]
    if W.ndim != 2 or H.ndim != 2:
        raise SystemExit("%s: W and H must be 2-D" % path)
    return W.astype(np.float32), H.astype(np.float64)


def run_ref(a, W, H, dtype=np.float32, **kw):
    t0 = time.time()
    r = gptq_solve(W, H, a.bits, a.group_size, bool(a.act_order), bool(a.sym),
                   bool(a.static_groups), bool(a.mse), a.damp, a.block_size,
                   dtype=dtype, **kw)
    r["time"] = time.time() - t0
    return r


def desc(a, W):
    return ("%dx%d bits=%d group=%d act_order=%d sym=%d static=%d mse=%d "
            "damp=%g block=%d" % (W.shape[0], W.shape[1], a.bits, a.group_size,
                                  a.act_order, a.sym, a.static_groups, a.mse,
                                  a.damp, a.block_size))


def cmd_solve(a):
    import h5py
    W, H = load_input(a.input)
    r = run_ref(a, W, H, np.float64 if a.dtype == "float64" else np.float32)
    with h5py.File(a.output, "w") as f:
        f["Q"] = r["Q"].astype(np.float32 if a.dtype == "float32" else np.float64)
        f["codes"] = r["codes"]
        f["scales"] = r["scales"]
        f["zeros"] = r["zeros"]
        f["g_idx"] = r["g_idx"]
        f["perm"] = r["perm"]
        f.attrs["error"] = np.float64(r["error"])
    print("gptq_ref solve: %s error=%.9g dead=%d time=%.2fs -> %s"
          % (desc(a, W), r["error"], r["dead"], r["time"], a.output))
    return 0


def cmd_compare(a):
    import h5py
    W, H = load_input(a.input)
    r = run_ref(a, W, H)
    rows, cols = W.shape
    problems = []
    try:
        with h5py.File(a.aptq, "r") as f:
            Qa = f["Q"][()]
            Ca = f["codes"][()]
            Sa = f["scales"][()]
            Za = f["zeros"][()]
            Ga = f["g_idx"][()]
            Ea = float(f.attrs["error"])
    except (OSError, KeyError) as e:
        print("FAIL gptq compare: cannot read %s: %s" % (a.aptq, e))
        return 1
    ng = r["scales"].shape[1]
    for name, arr, shape in (("Q", Qa, (rows, cols)), ("codes", Ca, (rows, cols)),
                             ("scales", Sa, (rows, ng)), ("zeros", Za, (rows, ng)),
                             ("g_idx", Ga, (cols,))):
        if arr.shape != shape:
            problems.append("%s shape %s != %s" % (name, arr.shape, shape))
    if problems:
        print("FAIL gptq compare: " + "; ".join(problems))
        return 1

    match = float(np.mean(Ca.astype(np.int64) == r["codes"]))
    Er = r["error"]
    rel = abs(Ea - Er) / Er if Er > 0 else (0.0 if Ea == Er else np.inf)
    if not np.isfinite(Ea):
        problems.append("aptq error not finite")
    if match < a.min_code_match:
        problems.append("code match %.6f < %g" % (match, a.min_code_match))
    if not abs(Ea - Er) <= a.error_rtol * Er:
        problems.append("error rel diff %.3e > %g" % (rel, a.error_rtol))

    # self-consistency of aptq's file: Q == scale[g] * (code - zero[g]) exactly
    maxq = 2 ** a.bits - 1
    gi = Ga.astype(np.int64)
    consistent = False
    if gi.min() < 0 or gi.max() >= ng:
        problems.append("g_idx out of range [0,%d)" % ng)
    elif Ca.min() < 0 or Ca.max() > maxq:
        problems.append("codes outside [0,%d]" % maxq)
    else:
        S = Sa.astype(np.float32)[:, gi]
        Z = Za.astype(np.float32)[:, gi]
        deq = S * (Ca.astype(np.float32) - Z)
        bad = int(np.sum(deq != Qa.astype(np.float32)))
        consistent = bad == 0
        if not consistent:
            problems.append("Q != scale*(code-zero) in %d entries" % bad)

    # information only (not pass criteria)
    gmatch = float(np.mean(Ga.astype(np.int64) == r["g_idx"]))
    sr = r["scales"].astype(np.float64)
    srel = float(np.max(np.abs(Sa.astype(np.float64) - sr) / np.maximum(np.abs(sr), 1e-30)))
    zmatch = float(np.mean(Za.astype(np.int64) == r["zeros"]))
    qdiff = float(np.max(np.abs(Qa.astype(np.float64) - r["Q"])))
    ok = not problems
    print("%s gptq compare: %s code_match=%.6f (%d/%d differ) error_aptq=%.9g "
          "error_ref=%.9g rel_diff=%.3e (rtol %g) Q_consistent=%s g_idx_match=%.4f "
          "zeros_match=%.4f max_scale_rel=%.2e max|dQ|=%.3e ref_time=%.2fs%s"
          % ("PASS" if ok else "FAIL", desc(a, W), match,
             int(np.sum(Ca.astype(np.int64) != r["codes"])), rows * cols,
             Ea, Er, rel, a.error_rtol, "yes" if consistent else "NO", gmatch,
             zmatch, srel, qdiff, r["time"],
             "" if ok else " [" + "; ".join(problems) + "]"))
    return 0 if ok else 1


def cmd_selftest(a):
    """How sensitive is the solve to float details?  Code match and error of
    perturbed solves against the float32 reference (information only)."""
    W, H = load_input(a.input)
    ref = run_ref(a, W, H)
    print("gptq_ref selftest: %s reference error=%.9g time=%.2fs"
          % (desc(a, W), ref["error"], ref["time"]))
    variants = (
        ("upd64", "updates (W, Hinv, err) in float64, quantizer float32",
         dict(dtype=np.float64, qdtype=np.float32)),
        ("all64", "everything in float64 (quantizer too: rounding ties move)",
         dict(dtype=np.float64)),
        ("fma", "intra-block update rounded once (fused multiply-add)",
         dict(fma=True)),
        ("fresh", "dynamic group params from updated W1 (NOT gptq.py)",
         dict(fresh_groups=True)),
    )
    for tag, what, kw in variants:
        if tag == "fresh" and (a.group_size <= 0 or a.static_groups):
            continue
        r = run_ref(a, W, H, **kw)
        diff = r["codes"] != ref["codes"]
        rel = abs(r["error"] - ref["error"]) / max(ref["error"], 1e-300)
        print("  %-6s code_match=%.6f rows_differing=%d/%d error=%.9g rel_diff=%.3e "
              "time=%.2fs  (%s)" % (tag, 1.0 - float(np.mean(diff)),
                                    int(np.sum(np.any(diff, axis=1))), W.shape[0],
                                    r["error"], rel, r["time"], what))
    return 0


def rtn_codes(W, bits, groupsize, sym):
    """Plain round-to-nearest with quant.py parameters per group (no GPTQ)."""
    q = Quantizer(bits, sym, False, np.float32)
    cols = W.shape[1]
    gs = groupsize if groupsize > 0 else cols
    C = np.zeros(W.shape, dtype=np.int64)
    for i in range(0, cols, gs):
        s, z = q.find_params(W[:, i:i + gs])
        C[:, i:i + gs] = q.codes(W[:, i:i + gs], s[:, None], z[:, None])
    return C


def cmd_sanity(a):
    """Self-checks of the reference itself on synthetic inputs."""
    rng = np.random.default_rng(a.seed)
    rows, cols = 48, 150
    X = rng.standard_normal((4 * cols, cols))
    X[:, 1:] += 0.6 * X[:, :-1]
    X *= rng.uniform(0.2, 3.0, cols)
    H = 2.0 / X.shape[0] * X.T @ X
    W = (0.02 * rng.standard_normal((rows, cols))).astype(np.float32)
    fails = []

    def check(cond, msg):
        print("  %s %s" % ("ok  " if cond else "FAIL", msg))
        if not cond:
            fails.append(msg)

    # 1. H = identity: no error feedback, GPTQ == RTN (bit-exact codes)
    for gs in (0, 32):
        for sym in (0, 1):
            for ao in (0, 1):
                r = gptq_solve(W, np.eye(cols), 4, gs, bool(ao), bool(sym))
                check(np.array_equal(r["codes"], rtn_codes(W, 4, gs, sym)),
                      "H=I gs=%d sym=%d act_order=%d: codes == RTN codes" % (gs, sym, ao))
    # 2. error decreases with bits; 8-bit error tiny
    for gs, ao in ((0, 0), (32, 1)):
        errs = [gptq_solve(W, H, b, gs, bool(ao))["error"] for b in (2, 3, 4, 8)]
        check(all(x > y for x, y in zip(errs, errs[1:])),
              "gs=%d act_order=%d: error decreasing in bits 2,3,4,8: %s"
              % (gs, ao, " ".join("%.4g" % e for e in errs)))
        check(errs[3] < 1e-3 * errs[0], "8-bit error %.3g < 1e-3 * 2-bit error" % errs[3])
        # GPTQ beats RTN on the same quadratic objective
        Hd = H + 0.01 * np.mean(np.diag(H)) * np.eye(cols)
        r = gptq_solve(W, H, 3, gs, bool(ao))
        q = Quantizer(3, False, False, np.float32)
        Qr = np.zeros_like(W)
        g = gs if gs else cols
        for i in range(0, cols, g):
            s, z = q.find_params(W[:, i:i + g])
            Qr[:, i:i + g] = q.quantize(W[:, i:i + g], s[:, None], z[:, None])
        D = (W - Qr).astype(np.float64)
        ertn = 0.5 * np.einsum("ij,jk,ik->", D, Hd, D)
        check(r["error"] < ertn, "3-bit gs=%d: GPTQ error %.4g < RTN error %.4g"
              % (gs, r["error"], ertn))
    # 3. sum(Losses) == 1/2 tr((W0-Q) Hdamp (W0-Q)^T) (exact in float64),
    #    dead columns quantize to 0, with every option
    Hdead = H.copy()
    dead = rng.choice(cols, 5, replace=False)
    Hdead[dead, :] = 0
    Hdead[:, dead] = 0
    for gs, ao, st, sym, mse in ((0, 0, 0, 0, 0), (0, 1, 0, 1, 1), (32, 0, 0, 0, 0),
                                 (32, 1, 0, 0, 1), (32, 1, 1, 1, 0), (40, 1, 1, 0, 1)):
        r = gptq_solve(W, Hdead, 3, gs, bool(ao), bool(sym), bool(st), bool(mse),
                       blocksize=64, dtype=np.float64)
        W0 = W.astype(np.float64).copy()
        W0[:, dead] = 0
        Hd = Hdead.copy()
        Hd[dead, dead] = 1
        Hd += 0.01 * np.mean(np.diag(Hd)) * np.eye(cols)
        D = W0 - r["Q"]
        quad = 0.5 * np.einsum("ij,jk,ik->", D, Hd, D)
        tag = "gs=%d ao=%d static=%d sym=%d mse=%d" % (gs, ao, st, sym, mse)
        check(abs(quad - r["error"]) <= 1e-9 * quad,
              "%s: sum(Losses) %.10g == quadratic form %.10g" % (tag, r["error"], quad))
        check(np.all(r["Q"][:, dead] == 0), "%s: dead columns quantize to 0" % tag)
        S = r["scales"][:, r["g_idx"]]
        Z = r["zeros"][:, r["g_idx"]]
        check(np.array_equal(S * (r["codes"] - Z), r["Q"]),
              "%s: Q == scale[g_idx]*(codes-zero[g_idx])" % tag)
    # 4. float32 reference: Q consistent with its own scales/zeros/g_idx
    r = gptq_solve(W, H, 4, 32, True, False)
    S = r["scales"][:, r["g_idx"]]
    Z = r["zeros"][:, r["g_idx"]].astype(np.float32)
    check(np.array_equal(S * (r["codes"].astype(np.float32) - Z), r["Q"]),
          "float32 gs=32 act_order: Q == scale[g_idx]*(codes-zero[g_idx]) exactly")
    print("%s gptq_ref sanity (%d failures)" % ("FAIL" if fails else "PASS", len(fails)))
    return 1 if fails else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("sanity")
    sp.add_argument("--seed", type=int, default=0)
    for name in ("solve", "compare", "selftest"):
        p = sub.add_parser(name)
        p.add_argument("--input", required=True)
        p.add_argument("--bits", type=int, required=True)
        p.add_argument("--group-size", type=int, required=True,
                       help="0 (or -1) = per-channel")
        p.add_argument("--act-order", type=int, choices=(0, 1), required=True)
        p.add_argument("--sym", type=int, choices=(0, 1), required=True)
        p.add_argument("--static-groups", type=int, choices=(0, 1), default=0)
        p.add_argument("--mse", type=int, choices=(0, 1), default=0)
        p.add_argument("--damp", type=float, default=0.01)
        p.add_argument("--block-size", type=int, default=128)
        if name == "solve":
            p.add_argument("--output", required=True)
            p.add_argument("--dtype", choices=("float32", "float64"),
                           default="float32", help=argparse.SUPPRESS)
        if name == "compare":
            p.add_argument("--aptq", required=True)
            p.add_argument("--min-code-match", type=float, default=0.999)
            p.add_argument("--error-rtol", type=float, default=1e-4)
    a = ap.parse_args(argv)
    if a.cmd == "sanity":
        return cmd_sanity(a)
    if not 1 <= a.bits <= 16:
        ap.error("--bits must be in 1..16")
    if a.block_size < 1:
        ap.error("--block-size must be >= 1")
    return {"solve": cmd_solve, "compare": cmd_compare,
            "selftest": cmd_selftest}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
