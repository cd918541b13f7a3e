#!/usr/bin/python3
"""Synthetic inputs for `aptq layer` tests: W (rows x cols, float32) and
H = 2/n XᵀX (float64) from correlated random activations.
  random_layer.py OUT.h5 ROWS COLS [--seed S] [--dead N] [--shift F] [--heads DH [--identity-out]]
--dead N zeroes the rows/columns of H (and X) of N columns (dead inputs);
--shift F moves the spectrum of H down so that its smallest eigenvalue is
-F·mean(diag H): indefinite, so that 1% damping fails for F > 0.01 and the
retry must raise it (columns get equal scales so the diagonal stays positive).
--heads DH adds H_out [ROWS/DH · DH][DH]: one correlated SPD output factor
per head of DH rows (the identity with --identity-out)."""
import argparse

import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("rows", type=int)
ap.add_argument("cols", type=int)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--dead", type=int, default=0)
ap.add_argument("--shift", type=float, default=0.0)
ap.add_argument("--heads", type=int, default=0)
ap.add_argument("--identity-out", action="store_true")
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
n = 2 * a.cols
X = rng.standard_normal((n, a.cols))
X[:, 1:] += 0.5 * X[:, :-1]
if not a.shift:
    X *= rng.uniform(0.2, 3.0, a.cols)  # uneven column scales: act-order matters
dead = rng.choice(a.cols, a.dead, replace=False) if a.dead else []
X[:, dead] = 0.0
H = 2.0 / n * X.T @ X
if a.shift:
    H -= (np.linalg.eigvalsh(H)[0] + a.shift * np.mean(np.diag(H))) * np.eye(a.cols)
W = (0.02 * rng.standard_normal((a.rows, a.cols))).astype(np.float32)
with h5py.File(a.out, "w") as f:
    f["W"] = W
    f["H"] = H
    f["W"].attrs["dead_columns"] = np.asarray(sorted(dead), dtype=np.int32)
    if a.heads:
        dh = a.heads
        blocks = []
        for _ in range(a.rows // dh):
            if a.identity_out:
                blocks.append(np.eye(dh))
            else:
                G = rng.standard_normal((dh, dh)) + 2.0 * np.eye(dh)
                blocks.append(G.T @ G / dh)
        f["H_out"] = np.concatenate(blocks, axis=0)
