#!/usr/bin/python3
"""Checks of `aptq layer --hessian_form=kron` output against its input:
  kron_check.py IN.h5 KRON.h5 GPTQ.h5
 - the reported error equals ½ Σ_heads tr(Δᵀ Ĥ_out Δ Ĥ_in) with Δ = W − Q and
   Ĥ the damped factors (GPTQ's error is the exact quadratic form of the
   sequential OBS updates), to 1e-3 relative (the solve runs in float32);
 - on the Kronecker objective tr(Δᵀ H_out Δ H) the Kronecker solve beats the
   plain GPTQ solve (H on the columns only) of the same layer."""
import sys

import h5py
import numpy as np

inp, kron, gptq = (h5py.File(p, "r") for p in sys.argv[1:4])
W = inp["W"][:].astype(np.float64)
H = inp["H"][:]
Hout = inp["H_out"][:]
dh = Hout.shape[1]
heads = W.shape[0] // dh


def damped(M, damp):
    M = M.copy()
    dead = np.diag(M) == 0
    M[dead, :] = 0
    M[:, dead] = 0
    M[dead, dead] = 1
    return M + damp * np.mean(np.diag(M)) * np.eye(len(M))


def kron_form(Q, Hin, out_of):
    D = W - Q
    total = 0.0
    for h in range(heads):
        Dh = D[h * dh:(h + 1) * dh]
        total += np.trace(Dh.T @ out_of(h) @ Dh @ Hin)
    return total


out = (lambda h: Hout) if Hout.shape[0] == dh else (lambda h: Hout[h * dh:(h + 1) * dh])
damp_in, damp_out = kron.attrs["damp_used"], kron.attrs["damp_out"]
Qk = kron["Q"][:].astype(np.float64)
Qg = gptq["Q"][:].astype(np.float64)
predicted = 0.5 * kron_form(Qk, damped(H, damp_in), lambda h: damped(out(h), damp_out))
reported = float(kron.attrs["error"])
rel = abs(reported - predicted) / predicted
obj_k, obj_g = kron_form(Qk, H, out), kron_form(Qg, H, out)
ok = rel < 1e-3 and obj_k < obj_g
print(f"kron error reported {reported:.6g} quadratic form {predicted:.6g} rel {'below 1e-3' if rel < 1e-3 else f'{rel:.1e}'}; "
      f"objective kron {obj_k:.6g} < gptq {obj_g:.6g}: {obj_k < obj_g}; {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
