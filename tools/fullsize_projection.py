#!/usr/bin/python3
"""Projection of a measured full-size run (tools/fullsize.sh) to one 64-core
node and to 4 and 16 such nodes (docs/scaling.md "Projection to a 64-core
node and to 4 and 16 nodes"). A model, not a measurement; every input is a measured figure.
  usage: fullsize_projection.py QUANTIZE_JSON EVAL_JSON EXPORT_SECONDS DEVICE_DIR [BYTES_PER_BLOCK [NSEQ SEQLEN]]
QUANTIZE_JSON, EVAL_JSON: the reports of fullsize.sh's quantize and eval
(WORKDIR/q.json, WORKDIR/e.json, kept with --keep); EXPORT_SECONDS: its
export phase's wall time; DEVICE_DIR: the strong-scaling reports of a
7B block at 4, 8 and 16 ranks on one 16-core machine (docs/scaling-16/);
BYTES_PER_BLOCK: the Hessian bytes one block reduces (the memory plan's
Hessian lines; default 0: no network term); NSEQ SEQLEN: project to this
calibration instead of the measured one (the forward, Hessian statistics
and Fisher estimate grow with the tokens, the Fisher estimate on at most
fisher_nseq = 16 sequences: linear in tokens, a lower bound, since the
attention terms grow with the sequence length too).

The model, per phase of the measured run at P0 ranks (max over ranks):
- load, export: held (reading and writing the checkpoint is I/O bound;
  export runs on rank 0).
- data-parallel phases (the Fisher estimate, the pass's forward and
  Hessian statistics, eval): divided as the sequences are, by
  ceil(n/P0)/ceil(n/P) where n is the run's sequence count; where P
  leaves one sequence per rank, divided further by the device's forward
  efficiency from 4 to 16 ranks (one sequence per rank there).
- factor + solve + write: times (P/P0)^-a up to 16 ranks, a fitted to the
  device's factor + solve from 4 to 16 ranks; held beyond 16 ranks (not
  measured there: a lower bound on the time).
- reduce: up to 16 ranks, times the device's ratio of the reduce at P
  ranks to that at 4 ranks (held below 4, and beyond 16: the volume per
  rank does not fall with P, the memory bandwidth per rank does); wait
  held; beyond one node, plus a
  network term per block: 64 ranks of a node each sending half the block's
  Hessian bytes over a 25 GB/s (200 Gb/s) link (recursive halving: the
  first exchanges pair ranks on different nodes): per block,
  BYTES_PER_BLOCK * 64 / 2 / 25e9 s.
"""
import json
import math
import sys

NODE = 64
NIC = 25e9


def device_fit(d):
    runs = {p: json.load(open(f"{d}/strong-np{p}.json"))["phases"] for p in (4, 8, 16)}
    fs = {p: runs[p]["factor"] + runs[p]["solve"] for p in runs}
    alpha = math.log(fs[4] / fs[16]) / math.log(4)
    rw = {p: runs[p]["reduce"] for p in runs}
    e1 = (runs[4]["forward"] * 4) / (runs[16]["forward"] * 16)
    return alpha, rw, e1


def dp(t, n, p0, p, e1):
    per0, per = math.ceil(n / p0), math.ceil(n / p)
    t = t * per / per0
    return t / e1 if per == 1 and per0 > 1 else t


def main():
    q, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
    export, dev = float(sys.argv[3]), sys.argv[4]
    vblock = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    alpha, rw, e1 = device_fit(dev)
    p0, nq, ne = q["ranks"], q["calib_nseq"], e["nseq"]
    ph, ps = q["phases"], q["phase_seconds"]
    blocks = len(q.get("layers", [])) // 7 or 32
    fisher = ps.get("fisher_sensitivity", 0.0) + ps.get("measuring_pass", 0.0)
    fwd = ph["forward"] + ph["hessian"]
    if len(sys.argv) > 7:  # another calibration: NSEQ x SEQLEN
        n, t, t0 = int(sys.argv[6]), int(sys.argv[7]), q["calib_seqlen"]
        fwd *= n * t / (nq * t0)
        fisher *= min(16, n) * t / (min(16, nq) * t0)
        nq = n
    rest = ps["load"]
    fsw = ph["factor"] + ph["solve"] + ph["write"]
    red, wait = ph["reduce"], ph["wait"]
    ev = e["seconds"]
    print(f"model: data-parallel as the sequences ({nq} calibration, {ne} eval), one-sequence efficiency {e1:.2f}; "
          f"factor+solve+write x (P/{p0})^-{alpha:.2f} to 16 ranks, then held; reduce x device ratio (x{rw[16] / rw[4]:.2f} at 16); "
          f"network {vblock / 1e9:.2f} GB per block")
    print("| ranks | nodes | load | Fisher | forward + Hessian | reduce + wait | factor + solve + write | eval | export | whole |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in (p0, NODE, 4 * NODE, 16 * NODE):
        nodes = max(1, p // NODE)
        f = dp(fisher, min(16, nq), p0, p, e1)
        fh = dp(fwd, nq, p0, p, e1)
        s = fsw * (min(p, 16) / p0) ** -alpha
        r = wait + (red if p <= 4 else red * rw[min(p, 16)] / rw[4])
        if nodes > 1:
            r += blocks * vblock * NODE / 2 / NIC
        v = dp(ev, ne, p0, p, e1)
        whole = rest + f + fh + r + s + v + export
        row = [rest, f, fh, r, s, v, export, whole]
        print(f"| {p} | {nodes if p >= NODE else '-'} | " + " | ".join(f"{x:.0f} s" for x in row) + " |")


if __name__ == "__main__":
    main()
