#!/usr/bin/python3
"""Independent check of an aptq quantized HDF5 file against its source model.

Reads the file with h5py and the source model with the loaders of
llama_ref.py (hand-written safetensors / llama2.c parsing), then

  * checks the schema: root attrs (format, format_version, aptq_version,
    created), /meta attrs (method, ranks, model_fingerprint, model_source,
    calib_sha256, option.*), /model attrs (config ints match the model),
    one group per quantized projection with int attrs bits, rows, cols,
    group_size, sym and datasets qweight uint32 [rows][ceil(cols*bits/32)],
    scales float32 [rows][ngroups], zeros int32 [rows][ngroups],
    g_idx int32 [cols];
  * checks that /meta options agree with the CLI (--bits, --group-size, --sym)
    and that every layer's attrs agree with /meta;
  * recomputes round-to-nearest quantization (IST-DASLab gptq quant.py
    semantics, float32, per row and per group) from the model's weights and
    compares codes (>= 99.99% equal per layer: ties may round differently),
    scales (rtol 1e-6), zeros (exact) and dequantized weights where the codes
    agree.

With --structure-only (e.g. for GPTQ files) only the schema, shapes, code
range and g_idx range are checked.

Usage
  rtn_check.py --h5 FILE --model PATH [--bits B] [--group-size G] [--sym 0|1]
               [--structure-only]
Prints one summary line (PASS/FAIL ...), preceded by one line per problem.
Exit status 0 on success, 1 on failure.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402  (model loaders and bit unpacking)

PROJS = llama_ref.PROJS
CODE_MATCH_MIN = 0.9999


def s(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return s(v[()])
    return str(v)


def is_int_attr(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def rtn_reference(w, bits, group_size, sym):
    """w float32 [rows][cols] -> codes int64, scales f32 [rows][ng], zeros int64."""
    rows, cols = w.shape
    gs = cols if group_size == 0 else group_size
    ng = (cols + gs - 1) // gs
    maxq = np.float32(2 ** bits - 1)
    codes = np.empty((rows, cols), dtype=np.int64)
    scales = np.empty((rows, ng), dtype=np.float32)
    zeros = np.empty((rows, ng), dtype=np.int64)
    f0 = np.float32(0)
    for g in range(ng):
        x = w[:, g * gs:(g + 1) * gs].astype(np.float32)
        xmin = np.minimum(x.min(axis=1), f0)
        xmax = np.maximum(x.max(axis=1), f0)
        if sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            xmin = np.where(xmin < 0, -xmax, xmin)
        both0 = (xmin == 0) & (xmax == 0)
        xmin = np.where(both0, np.float32(-1), xmin).astype(np.float32)
        xmax = np.where(both0, np.float32(1), xmax).astype(np.float32)
        scale = ((xmax - xmin) / maxq).astype(np.float32)
        if sym:
            zero = np.full(rows, np.float32((2 ** bits) // 2), dtype=np.float32)
        else:
            zero = np.round((-xmin) / scale).astype(np.float32)  # half-even
        q = np.round(x / scale[:, None]).astype(np.float32) + zero[:, None]
        q = np.clip(q, f0, maxq)
        codes[:, g * gs:(g + 1) * gs] = q.astype(np.int64)
        scales[:, g] = scale
        zeros[:, g] = zero.astype(np.int64)
    return codes, scales, zeros


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--h5", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--bits", type=int, default=None)
    ap.add_argument("--group-size", type=int, default=None)
    ap.add_argument("--sym", type=int, choices=(0, 1), default=None)
    ap.add_argument("--structure-only", action="store_true")
    a = ap.parse_args(argv)

    import h5py

    errs = []

    def err(msg):
        errs.append(msg)
        print("  problem: " + msg)

    c, W = llama_ref.load_model(a.model)
    f = h5py.File(a.h5, "r")

    # ---- root
    ra = f.attrs
    for k in ("format", "format_version", "aptq_version", "created"):
        if k not in ra:
            err("root attr %s missing" % k)
    if "format" in ra and s(ra["format"]) != "aptq-quantized-model":
        err("format = %r" % s(ra["format"]))
    if "format_version" in ra and (not is_int_attr(ra["format_version"])
                                   or int(ra["format_version"]) != 1):
        err("format_version = %r" % ra["format_version"])

    # ---- meta
    meta = {}
    if "meta" not in f:
        err("/meta missing")
    else:
        ma = f["meta"].attrs
        for k in ("method", "ranks", "model_fingerprint", "model_source",
                  "calib_sha256"):
            if k not in ma:
                err("/meta attr %s missing" % k)
        meta = {k: ma[k] for k in ma}
        if "model_fingerprint" in ma and len(s(ma["model_fingerprint"])) == 0:
            err("/meta model_fingerprint empty")
        if "ranks" in ma and (not is_int_attr(ma["ranks"]) or int(ma["ranks"]) < 1):
            err("/meta ranks = %r" % ma["ranks"])
    method = s(meta.get("method", ""))
    if not a.structure_only and method != "rtn":
        err("/meta method = %r, expected rtn (use --structure-only)" % method)

    def opt(k):
        v = meta.get("option." + k)
        return None if v is None else s(v)

    for k in ("bits", "group_size", "sym", "method", "model", "output"):
        if opt(k) is None:
            err("/meta option.%s missing" % k)
    bits = int(opt("bits")) if opt("bits") else None
    gsz = int(opt("group_size")) if opt("group_size") else None
    symv = {"yes": 1, "no": 0, "1": 1, "0": 0, "true": 1,
            "false": 0}.get((opt("sym") or "").lower())
    if opt("method") is not None and opt("method") != method:
        err("option.method %r != method %r" % (opt("method"), method))
    if a.bits is not None and bits != a.bits:
        err("option.bits %r != --bits %d" % (bits, a.bits))
    if a.group_size is not None and gsz != a.group_size:
        err("option.group_size %r != --group-size %d" % (gsz, a.group_size))
    if a.sym is not None and symv != a.sym:
        err("option.sym %r != --sym %d" % (opt("sym"), a.sym))
    bits = a.bits if a.bits is not None else bits
    gsz = a.group_size if a.group_size is not None else gsz
    symv = a.sym if a.sym is not None else symv

    # ---- model
    want = dict(hidden_size=c["hidden"], intermediate_size=c["inter"],
                num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                num_key_value_heads=c["kv_heads"], head_dim=c["head_dim"],
                vocab_size=c["vocab"])
    if "model" not in f:
        err("/model missing")
    else:
        mattr = f["model"].attrs
        if "config_json" not in mattr:
            err("/model attr config_json missing")
        for k, v in want.items():
            if k not in mattr:
                err("/model attr %s missing" % k)
            elif not is_int_attr(mattr[k]) or int(mattr[k]) != v:
                err("/model %s = %r, model has %d" % (k, mattr[k], v))

    # ---- layers
    n_layers_checked = 0
    tot_codes = 0
    tot_mismatch = 0
    worst_scale_rel = 0.0
    worst_deq = 0.0
    worst_frac = 1.0
    if "layers" not in f:
        err("/layers missing")
        layers = None
    else:
        layers = f["layers"]
        expected = ["model.layers.%d.%s" % (l, p)
                    for l in range(c["layers"]) for p in PROJS]
        extra = sorted(set(layers.keys()) - set(expected))
        if extra:
            err("unexpected groups in /layers: %s" % extra[:5])
        for name in expected:
            if name not in layers:
                err("%s missing" % name)
                continue
            g = layers[name]
            wf = W[name]
            rows, cols = wf.shape
            at = {}
            bad = False
            for k in ("bits", "rows", "cols", "group_size", "sym"):
                if k not in g.attrs or not is_int_attr(g.attrs[k]):
                    err("%s attr %s missing or not int" % (name, k))
                    bad = True
                else:
                    at[k] = int(g.attrs[k])
            if bad:
                continue
            if (at["rows"], at["cols"]) != (rows, cols):
                err("%s rows,cols = %d,%d, model weight is %dx%d"
                    % (name, at["rows"], at["cols"], rows, cols))
                continue
            if bits is not None and at["bits"] != bits:
                err("%s bits %d != %d" % (name, at["bits"], bits))
            if gsz is not None and at["group_size"] != gsz:
                err("%s group_size %d != %d" % (name, at["group_size"], gsz))
            if symv is not None and at["sym"] != symv:
                err("%s sym %d != %d" % (name, at["sym"], symv))
            b, G, sy = at["bits"], at["group_size"], at["sym"]
            if not (1 <= b <= 16) or G < 0 or sy not in (0, 1):
                err("%s bad attrs %r" % (name, at))
                continue
            ng = 1 if G == 0 else (cols + G - 1) // G
            nw = (cols * b + 31) // 32
            shapes = dict(qweight=(np.uint32, (rows, nw)),
                          scales=(np.float32, (rows, ng)),
                          zeros=(np.int32, (rows, ng)),
                          g_idx=(np.int32, (cols,)))
            ds = {}
            for k, (dt, sh) in shapes.items():
                if k not in g or not isinstance(g[k], h5py.Dataset):
                    err("%s dataset %s missing" % (name, k))
                    bad = True
                    continue
                d = g[k]
                if d.dtype != np.dtype(dt) or d.shape != sh:
                    err("%s/%s is %s%s, expected %s%s"
                        % (name, k, d.dtype, d.shape, np.dtype(dt), sh))
                    bad = True
                    continue
                ds[k] = d[()]
            if bad:
                continue
            maxq = 2 ** b - 1
            codes = llama_ref.unpack_codes(ds["qweight"], b, cols)
            # padding bits after the last code should be zero
            pad = nw * 32 - cols * b
            if pad:
                last = ds["qweight"][:, -1].astype(np.uint64) >> np.uint64(32 - pad)
                if np.any(last != 0):
                    err("%s nonzero padding bits in last qweight word" % name)
            gi = ds["g_idx"].astype(np.int64)
            if gi.min() < 0 or gi.max() >= ng:
                err("%s g_idx out of range [0,%d)" % (name, ng))
                continue
            sc = ds["scales"]
            zr = ds["zeros"].astype(np.int64)
            if not np.all(np.isfinite(sc)):
                err("%s non-finite scales" % name)
            n_layers_checked += 1
            if a.structure_only:
                continue
            gs_eff = cols if G == 0 else G
            if not np.array_equal(gi, np.arange(cols) // gs_eff):
                err("%s g_idx is not j // group_size" % name)
                continue
            rc, rs, rz = rtn_reference(wf.astype(np.float32), b, G, sy)
            mism = int(np.sum(codes != rc))
            frac = 1.0 - mism / codes.size
            tot_codes += codes.size
            tot_mismatch += mism
            worst_frac = min(worst_frac, frac)
            if frac < CODE_MATCH_MIN:
                err("%s codes match %.6f < %.4f (%d of %d differ)"
                    % (name, frac, CODE_MATCH_MIN, mism, codes.size))
            srel = float(np.max(np.abs(sc.astype(np.float64) - rs) /
                                np.maximum(np.abs(rs.astype(np.float64)), 1e-30)))
            worst_scale_rel = max(worst_scale_rel, srel)
            if srel > 1e-6:
                err("%s scales differ: max rel %.3e" % (name, srel))
            zm = int(np.sum(zr != rz))
            if zm:
                err("%s zeros differ in %d of %d entries" % (name, zm, zr.size))
            deq = sc[:, gi] * (codes - zr[:, gi]).astype(np.float32)
            rdeq = rs[:, gi] * (rc - rz[:, gi]).astype(np.float32)
            m = codes == rc
            tol = 2e-6 * np.abs(rs[:, gi].astype(np.float64)) * (maxq + 1)
            dd = np.abs(deq.astype(np.float64) - rdeq)
            if np.any(dd[m] > tol[m]):
                err("%s dequantized weights differ where codes agree (max %.3e)"
                    % (name, float(dd[m].max())))
            worst_deq = max(worst_deq, float(dd[m].max()) if m.any() else 0.0)
    ok = not errs
    if a.structure_only:
        print("%s rtn_check (structure only): %s method=%s layers=%d bits=%s "
              "group_size=%s sym=%s problems=%d"
              % ("PASS" if ok else "FAIL", a.h5, method, n_layers_checked,
                 bits, gsz, symv, len(errs)))
    else:
        print("%s rtn_check: %s layers=%d bits=%s group_size=%s sym=%s "
              "code_mismatch=%d/%d worst_layer_match=%.6f max_scale_rel=%.2e "
              "max_deq_diff=%.2e problems=%d"
              % ("PASS" if ok else "FAIL", a.h5, n_layers_checked, bits, gsz,
                 symv, tot_mismatch, tot_codes, worst_frac, worst_scale_rel,
                 worst_deq, len(errs)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
