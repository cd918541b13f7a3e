#!/usr/bin/python3
"""Two quantized files hold the same layers: every dataset under /layers
equal byte for byte and every layer attribute equal, except hessian_form
(the form's name, which is what differs between, e.g., APTQ's row-shared
q/k forms shrunk all the way to GPTQ's Hessian, aptq_shrink = 1, and the
gptq forms). Prints how many layers are identical and which hessian_form
values differ; fails if anything else does.
  same_but_form.py A.h5 B.h5
With --agree PREFIX instead: for the layers whose name starts with PREFIX,
the fraction of equal packed code words (qweight) and whether the scales
agree to a relative 1e-6, for files that should agree only to rounding."""
import collections
import sys

import h5py
import numpy as np


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def same(a, b):
    la, lb = a["layers"], b["layers"]
    if sorted(la) != sorted(lb):
        sys.exit("FAIL: the files hold different layers")
    forms, bad = collections.Counter(), []
    for name in sorted(la):
        ga, gb = la[name], lb[name]
        for d in sorted(set(ga) | set(gb)):
            if d not in ga or d not in gb or ga[d].dtype != gb[d].dtype or ga[d][()].tobytes() != gb[d][()].tobytes():
                bad.append(f"{name}/{d}")
        for k in sorted(set(ga.attrs) | set(gb.attrs)):
            va, vb = ga.attrs.get(k), gb.attrs.get(k)
            if k == "hessian_form":
                if text(va) != text(vb):
                    forms[(name.split(".")[-1], text(va), text(vb))] += 1
            elif va is None or vb is None or np.asarray(va).tobytes() != np.asarray(vb).tobytes():
                bad.append(f"{name} attribute {k}")
    print(f"layers with identical datasets and attributes: {len(la) - len({b.split('/')[0].split(' ')[0] for b in bad})} of {len(la)}")
    for (layer, fa, fb), n in sorted(forms.items()):
        print(f"hessian_form {layer}: {fa} | {fb} in {n} layers")
    if bad:
        sys.exit("FAIL: differ: " + ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))


def agree(a, b, prefix):
    for name in sorted(n for n in a["layers"] if n.startswith(prefix)):
        ga, gb = a["layers"][name], b["layers"][name]
        qa, qb = ga["qweight"][()], gb["qweight"][()]
        sa, sb = ga["scales"][()].astype(np.float64), gb["scales"][()].astype(np.float64)
        rel = np.max(np.abs(sa - sb) / np.maximum(np.abs(sb), 1e-30))
        print(f"{name}: equal code words {np.mean(qa == qb):.3f}, scales within 1e-6: {'yes' if rel <= 1e-6 else f'no ({rel:.1e})'}")


args = sys.argv[1:]
with h5py.File(args[0], "r") as a, h5py.File(args[1], "r") as b:
    if len(args) == 4 and args[2] == "--agree":
        agree(a, b, args[3])
    else:
        same(a, b)
