#!/usr/bin/python3
"""Seeds for the HDF5 fuzz targets (tools/fuzz.sh), made at fuzz time:
small valid files of the layouts aptq writes (docs/hdf5-schema.md), with
the shapes the targets expect (tests/fuzz/fuzz_h5.h). The files use the
latest HDF5 format (libver "latest"): its metadata carries checksums, so a
mutated header is refused by HDF5's checksum check and the mutations that
get through land in attribute values and raw data, which aptq's own
checks must handle. (HDF5 1.10's parser of the older, unchecksummed
metadata has crashes of its own on fuzzed headers, outside aptq's reach:
docs/hdf5-schema.md.)
  seed_h5.py qfile DIR        DIR/valid.h5: a quantized file, two layers
  seed_h5.py checkpoint DIR   DIR/state.h5 and DIR/block.h5"""
import os
import sys

import h5py
import numpy as np

ROWS, COLS, DOWN_COLS, BITS, GS = 8, 16, 20, 3, 8  # fuzz_h5.h
XROWS, DIM, LAYERS, NSTATS = 4, 8, 2, 3


def sattr(obj, name, value):
    """A fixed-length string attribute, as aptq writes them."""
    obj.attrs.create(name, np.bytes_(value + "\0"), dtype=h5py.string_dtype("ascii", len(value) + 1))


def layer(f, name, rows, cols, rng):
    g = f.create_group("/layers/" + name)
    for k, v in (("bits", BITS), ("rows", rows), ("cols", cols), ("group_size", GS), ("sym", 0)):
        g.attrs.create(k, v, dtype=np.int32)
    ng = (cols + GS - 1) // GS
    codes = rng.integers(0, 1 << BITS, (rows, cols), dtype=np.uint64)
    wpr = (cols * BITS + 31) // 32
    qw = np.zeros((rows, wpr), np.uint32)
    for i in range(rows):
        bits = 0
        for j in range(cols):
            bits |= int(codes[i, j]) << (j * BITS)
        for w in range(wpr):
            qw[i, w] = (bits >> (32 * w)) & 0xFFFFFFFF
    g["qweight"] = qw
    g["scales"] = rng.uniform(0.01, 0.1, (rows, ng)).astype(np.float32)
    g["zeros"] = rng.integers(0, 1 << BITS, (rows, ng), dtype=np.int32)
    g["g_idx"] = (np.arange(cols) // GS).astype(np.int32)
    g.attrs.create("damp", 0.01)
    sattr(g, "hessian_form", "gptq")


def qfile(d):
    rng = np.random.default_rng(1)
    with h5py.File(os.path.join(d, "valid.h5"), "w", libver="latest") as f:
        sattr(f, "format", "aptq-quantized-model")
        f.attrs.create("format_version", 1, dtype=np.int32)
        sattr(f["/"].require_group("meta"), "model_fingerprint", "0" * 64)
        layer(f, "model.layers.0.self_attn.q_proj", ROWS, COLS, rng)
        layer(f, "model.layers.0.mlp.down_proj", ROWS, DOWN_COLS, rng)


def checkpoint(d):
    rng = np.random.default_rng(2)
    with h5py.File(os.path.join(d, "state.h5"), "w", libver="latest") as f:
        m = f.create_group("meta")
        sattr(m, "format", "aptq-checkpoint")
        sattr(m, "options", "bits = 4\nmethod = gptq\n")
        sattr(m, "model_fingerprint", "0" * 64)
        sattr(m, "calib_sha256", "1" * 64)
        for k, v in (("next_block", 1), ("layers", LAYERS), ("stats", NSTATS)):
            m.attrs.create(k, v, dtype=np.int32)
        f["/state/X"] = rng.standard_normal((XROWS, DIM)).astype(np.float32)
        f["/state/stats"] = rng.standard_normal((LAYERS, NSTATS))
    with h5py.File(os.path.join(d, "block.h5"), "w", libver="latest") as f:
        layer(f, "model.layers.0.self_attn.q_proj", ROWS, COLS, rng)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("qfile", "checkpoint"):
        sys.exit(__doc__)
    os.makedirs(sys.argv[2], exist_ok=True)
    {"qfile": qfile, "checkpoint": checkpoint}[sys.argv[1]](sys.argv[2])
