#!/usr/bin/python3
"""Crafted HDF5 inputs for the refusal tests of issue 13 (tests/cases/
bad_crafted_*.case): each file is a valid aptq file with one thing wrong.

  craft_h5.py qfile VALID.h5 OUTDIR       quantized files OUTDIR/NAME.h5
  craft_h5.py checkpoint CKDIR OUTDIR     checkpoint dirs OUTDIR/NAME/
  craft_h5.py layer OUTDIR                aptq layer inputs OUTDIR/NAME.h5

VALID.h5 must be a 3-bit quantization of wt2-llama-s with group_size 32
(model.layers.0.mlp.down_proj then has 688 columns: 2064 bits a row, so
16 padding bits in each row's last word). Prints the names made."""
import os
import shutil
import sys

import h5py
import numpy as np

Q = "/layers/model.layers.0.self_attn.q_proj"
O = "/layers/model.layers.0.self_attn.o_proj"
DOWN = "/layers/model.layers.0.mlp.down_proj"


def replace(f, name, data, **kw):
    """Dataset name recreated with data (and h5py create_dataset options)."""
    del f[name]
    f.create_dataset(name, data=data, **kw)


def bad_value(name, index, value):
    def edit(f, out):
        d = f[name][...]
        d[index] = value
        f[name][...] = d
    return edit


def set_bit31(f, out):
    qw = f[DOWN + "/qweight"][...]
    qw[0, -1] |= np.uint32(1 << 31)
    f[DOWN + "/qweight"][...] = qw


def external_storage(f, out):
    # the scales' bytes in another file of the machine
    data = f[Q + "/scales"][...]
    del f[Q + "/scales"]
    f.create_dataset(Q + "/scales", shape=data.shape, dtype=data.dtype, external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)])


def virtual(f, out):
    data = f[O + "/scales"]
    layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
    layout[...] = h5py.VirtualSource(data)
    del f[Q + "/scales"]
    f.create_virtual_dataset(Q + "/scales", layout)


def external_link(f, out):
    other = os.path.join(os.path.dirname(out), "valid-copy.h5")
    del f[Q]
    f[Q] = h5py.ExternalLink(other, Q)


def soft_link(name, target):
    def edit(f, out):
        del f[name]
        f[name] = h5py.SoftLink(target)
    return edit


def attr(obj, name, value):
    def edit(f, out):
        del f[obj].attrs[name]
        f[obj].attrs[name] = value
    return edit


QFILE = {
    "attr_type": attr(Q, "bits", np.bytes_("3")),
    "attr_size": attr(Q, "rows", np.full(4, 256, dtype=np.int32)),
    "attr_vlen": attr("/", "format", "aptq-quantized-model"),  # h5py: variable-length string
    "rank": lambda f, out: replace(f, Q + "/scales", f[Q + "/scales"][...].reshape(-1)),
    "dims": lambda f, out: replace(f, Q + "/scales", np.ones((256, 9), np.float32)),
    "dtype": lambda f, out: replace(f, Q + "/qweight", f[Q + "/qweight"][...].astype(np.float32)),
    "missing": lambda f, out: f.__delitem__(Q + "/g_idx"),
    "external_storage": external_storage,
    "virtual": virtual,
    "external_link": external_link,
    "soft_link_group": soft_link(Q, O),
    "soft_link_dataset": soft_link(Q + "/scales", O + "/scales"),
    "nan_scale": bad_value(Q + "/scales", (3, 2), np.nan),
    "inf_scale": bad_value(Q + "/scales", (3, 2), np.inf),
    "negative_scale": bad_value(Q + "/scales", (3, 2), -0.01),
    "zero_scale": bad_value(Q + "/scales", (3, 2), 0.0),
    "zero_point": bad_value(Q + "/zeros", (5, 1), 8),
    "negative_zero_point": bad_value(Q + "/zeros", (5, 1), -1),
    "g_idx": bad_value(Q + "/g_idx", 7, 8),
    "negative_g_idx": bad_value(Q + "/g_idx", 7, -1),
    "padding": set_bit31,
    "bits": attr(Q, "bits", np.int32(9)),
    # the optional mins (grid = q4_k | q5_k | q2_k): a NaN, and the wrong shape
    "nan_min": lambda f, out: f.create_dataset(Q + "/mins", data=np.where(np.arange(256 * 8).reshape(256, 8) == 3 * 8 + 2, np.nan,
                                                                              0.0).astype(np.float32)),
    "mins_dims": lambda f, out: f.create_dataset(Q + "/mins", data=np.zeros((256, 9), np.float32)),
}


def data_offset(src, out):
    """The scales' layout message made to point past the end of the file:
    the 8-byte address of its contiguous data, found in the (unchecksummed)
    object header, replaced by 2^40."""
    with h5py.File(out, "r") as f:
        offset = f[Q + "/scales"].id.get_offset()
    data = bytearray(open(out, "rb").read())
    old = offset.to_bytes(8, "little")
    assert data.count(old) == 1, "the address is not unique in the file"
    i = data.index(old)
    data[i:i + 8] = (1 << 40).to_bytes(8, "little")
    open(out, "wb").write(data)


def craft(src, out, edit):
    shutil.copyfile(src, out)
    with h5py.File(out, "r+") as f:
        edit(f, out)


def qfiles(src, outdir):
    os.makedirs(outdir, exist_ok=True)
    shutil.copyfile(src, os.path.join(outdir, "valid-copy.h5"))
    for name, edit in QFILE.items():
        craft(src, os.path.join(outdir, name + ".h5"), edit)
        print(name)
    shutil.copyfile(src, os.path.join(outdir, "data_offset.h5"))
    data_offset(src, os.path.join(outdir, "data_offset.h5"))
    print("data_offset")


BLOCK_Q = "/layers/model.layers.0.self_attn.q_proj"

CHECKPOINT = {  # file in the checkpoint directory, edit
    "state_X_dims": ("state.h5", lambda f, out: replace(f, "/state/X", np.zeros((f["/state/X"].shape[0], 300), np.float32))),
    "state_X_rank": ("state.h5", lambda f, out: replace(f, "/state/X", f["/state/X"][...].reshape(-1))),
    "state_stats_dims": ("state.h5", lambda f, out: replace(f, "/state/stats", np.zeros((28, 40)))),
    "state_next_block_size": ("state.h5", attr("/meta", "next_block", np.full(64, 1, dtype=np.int32))),
    "state_format_type": ("state.h5", attr("/meta", "format", np.int32(7))),
    "state_X_external": ("state.h5", lambda f, out: (lambda shape: (f.__delitem__("/state/X"), f.create_dataset(
        "/state/X", shape=shape, dtype=np.float32, external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)])))(f["/state/X"].shape)),
    "block_shape": ("block-0.h5", attr(BLOCK_Q, "rows", np.int32(512))),
    "block_rank": ("block-0.h5", lambda f, out: replace(f, BLOCK_Q + "/zeros", f[BLOCK_Q + "/zeros"][...].reshape(-1))),
    "block_attr_size": ("block-0.h5", attr(BLOCK_Q, "cols", np.full(3, 256, dtype=np.int32))),
    "block_extra_attr_size": ("block-0.h5", attr(BLOCK_Q, "damp", np.full(4000, 0.01))),
    "block_soft_link": ("block-0.h5", soft_link(BLOCK_Q, "/layers/model.layers.0.self_attn.o_proj")),
    "block_negative_scale": ("block-0.h5", bad_value(BLOCK_Q + "/scales", (0, 0), -1.0)),
}


def checkpoints(src, outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, (fname, edit) in CHECKPOINT.items():
        d = os.path.join(outdir, name)
        shutil.copytree(src, d)
        with h5py.File(os.path.join(d, fname), "r+") as f:
            edit(f, os.path.join(d, fname))
        print(name)


def layers(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(13)
    W = rng.standard_normal((8, 16)).astype(np.float32)
    X = rng.standard_normal((64, 16))
    H = X.T @ X

    def write(name, edit=None):
        path = os.path.join(outdir, name + ".h5")
        with h5py.File(path, "w") as f:
            f["W"] = W
            f["H"] = H
            if edit:
                edit(f, path)
        print(name)

    write("valid")
    write("W_rank", lambda f, p: replace(f, "W", W.reshape(-1)))
    write("W_3d", lambda f, p: replace(f, "W", W.reshape(2, 4, 16)))
    write("W_string", lambda f, p: replace(f, "W", np.bytes_("weights")))
    write("H_dims", lambda f, p: replace(f, "H", np.eye(17)))
    write("W_external", lambda f, p: (f.__delitem__("W"), f.create_dataset(
        "W", shape=(8, 16), dtype=np.float32, external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)])))
    write("W_external_link", lambda f, p: (f.__delitem__("W"), f.__setitem__("W", h5py.ExternalLink(
        os.path.join(outdir, "valid.h5"), "/W"))))
    write("H_soft_link", lambda f, p: (f.__delitem__("H"), f.__setitem__("H", h5py.SoftLink("/W"))))
    write("W_group", lambda f, p: (f.__delitem__("W"), f.create_group("W")))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "qfile":
        qfiles(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "checkpoint":
        checkpoints(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "layer":
        layers(sys.argv[2])
    else:
        sys.exit(__doc__)
