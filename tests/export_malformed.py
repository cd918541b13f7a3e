#!/usr/bin/python3
"""Malformed inputs for tools/export_gptq.py (issue 13): each KIND is made
from a valid quantized file GOOD.h5 (4-bit, groups of 32) and the model
directory MODEL, the export is run on it, and one line is printed:
  KIND: exit STATUS, N stderr line(s), output absent|WRITTEN: LAST STDERR LINE
The export must end with exactly one 'export_gptq: error: ...' line, exit
status 1, no output directory and no temporary directory left beside it.
  export_malformed.py EXPORT_GPTQ.py GOOD.h5 MODEL TMPDIR"""
import glob
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

export, good, model, tmp = sys.argv[1:5]
LAYER = "layers/model.layers.1.self_attn.k_proj"


def edit(fn):
    def make(path):
        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            fn(f)
    return make


def setitem(name, index, value):
    def fn(f):
        d = f[f"{LAYER}/{name}"]
        a = d[()]
        a[index] = value
        del f[f"{LAYER}/{name}"]
        f[f"{LAYER}/{name}"] = a
    return fn


def attr(obj, key, value):
    def fn(f):
        o = f[obj]
        if value is None:
            del o.attrs[key]
        else:
            o.attrs[key] = value
    return fn


def flip_fingerprint(f):
    fp = f["meta"].attrs["model_fingerprint"]
    fp = fp.decode() if isinstance(fp, bytes) else fp
    f["meta"].attrs["model_fingerprint"] = np.bytes_(fp[:40] + ("0" if fp[40] != "0" else "1") + fp[41:])


def text(path):
    open(path, "w").write("not an HDF5 file\n")


def truncated(path):
    data = open(good, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def reshape(name, shape):
    def fn(f):
        del f[f"{LAYER}/{name}"]
        f[f"{LAYER}/{name}"] = np.zeros(shape, dtype=np.int32)
    return fn


def delete(obj):
    def fn(f):
        del f[obj]
    return fn


def extra_layer(f):
    f.copy(f[LAYER], "layers/model.layers.9.self_attn.k_proj")


KINDS = {
    "not-hdf5": text,
    "truncated": truncated,
    "format": edit(attr("/", "format", np.bytes_("something-else"))),
    "version": edit(attr("/", "format_version", 2)),
    "version-type": edit(attr("/", "format_version", np.bytes_("1"))),
    "no-fingerprint": edit(attr("meta", "model_fingerprint", None)),
    "fingerprint": edit(flip_fingerprint),
    "no-layers": edit(delete("layers")),
    "missing-layer": edit(delete(LAYER)),
    "extra-layer": edit(extra_layer),
    "no-bits": edit(attr(LAYER, "bits", None)),
    "bits-string": edit(attr(LAYER, "bits", np.bytes_("4"))),
    "bits-5": edit(attr(LAYER, "bits", 5)),
    "rows": edit(attr(LAYER, "rows", 64)),
    "group-size": edit(attr(LAYER, "group_size", 64)),
    "group-size-negative": edit(attr(LAYER, "group_size", -1)),
    "sym": edit(attr(LAYER, "sym", 7)),
    "no-zeros": edit(delete(f"{LAYER}/zeros")),
    "qweight-shape": edit(reshape("qweight", (3, 3))),
    "scales-type": edit(reshape("scales", (128, 8))),
    "nan-scale": edit(setitem("scales", (0, 0), np.nan)),
    "inf-scale": edit(setitem("scales", (5, 2), np.inf)),
    "negative-scale": edit(setitem("scales", (1, 1), -0.5)),
    "zero-range": edit(setitem("zeros", (2, 3), 16)),
    "zero-negative": edit(setitem("zeros", (2, 3), -1)),
    "g-idx-range": edit(setitem("g_idx", 5, 999)),
    "g-idx-negative": edit(setitem("g_idx", 7, -2)),
}
MODEL_KINDS = {  # a valid file with a damaged copy of the model directory
    "model-config": lambda d: open(f"{d}/config.json", "w").write("{not json"),
    "model-config-key": lambda d: json.dump({k: v for k, v in json.load(open(f"{model}/config.json")).items() if k != "hidden_size"},
                                             open(f"{d}/config.json", "w")),
    "model-rope-theta": lambda d: json.dump(dict(json.load(open(f"{model}/config.json")), rope_theta=20000.0), open(f"{d}/config.json", "w")),
    "model-index": lambda d: open(f"{d}/model.safetensors.index.json", "w").write("[]"),
    "model-shard-truncated": lambda d: open(f"{d}/model-00003-of-00003.safetensors", "wb").write(
        open(f"{model}/model-00003-of-00003.safetensors", "rb").read()[:1000]),
}


def run(kind, path, model_dir, out):
    p = subprocess.run([sys.executable, export, path, model_dir, out], capture_output=True, text=True)
    lines = p.stderr.splitlines()
    left = glob.glob(os.path.join(os.path.dirname(out), ".export-*"))
    state = "WRITTEN" if os.path.exists(out) and out != model_dir else "absent"
    ok = p.returncode == 1 and len(lines) == 1 and lines[0].startswith("export_gptq: error: ") and state == "absent" and not left
    print(f"{kind}: exit {p.returncode}, {len(lines)} stderr line(s), output {state}{', temporary left' if left else ''}: "
          f"{lines[-1] if lines else ''}".replace(tmp, "TMP").replace(model, "MODEL"))
    return ok


bad = 0
for kind, make in KINDS.items():
    path = os.path.join(tmp, f"bad-{kind}.h5")
    make(path)
    bad += not run(kind, path, model, os.path.join(tmp, f"x-{kind}"))
for kind, damage in MODEL_KINDS.items():
    d = os.path.join(tmp, f"model-{kind}")
    os.mkdir(d)
    for fn in os.listdir(model):
        os.symlink(os.path.join(model, fn), os.path.join(d, fn))
    for fn in ("config.json", "model.safetensors.index.json", "model-00003-of-00003.safetensors"):
        os.unlink(os.path.join(d, fn))
        shutil.copy(os.path.join(model, fn), os.path.join(d, fn))
    damage(d)
    bad += not run(kind, good, d, os.path.join(tmp, f"x-{kind}"))
bad += not run("output-is-model", good, model, model)  # (--overwrite is not given: refused before that matters)
print(f"malformed inputs: {len(KINDS) + len(MODEL_KINDS) + 1 - bad} of {len(KINDS) + len(MODEL_KINDS) + 1} refused cleanly")
sys.exit(1 if bad else 0)
