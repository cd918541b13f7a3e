#!/usr/bin/python3
"""PETSc-style test harness for aptq.

A case file (tests/cases/NAME.case) declares:
    ranks:   rank counts to run at (CTest registers one test per count)
    run:     an aptq command line (several run: lines run in order); ${DATA}
             is the shared data folder, ${TMP} a fresh folder for the test,
             ${RANKS} the rank count
    shell:   a shell command run between steps (same substitutions,
             ${APTQ} the binary, ${BUILD} its folder, ${PY} this Python)
    filter:  regular expression; only stdout lines matching it are compared
    output:  expected output file under tests/output/ (compared line by
             line: words exactly, numbers within tolerance); may use
             ${RANKS} for outputs that name the rank count
    rtol, atol: numeric tolerance (default rtol 1e-6, atol 0)
    error:   the last run: step must fail: exit != 0, exactly one line
             starting "aptq: error" on stderr, matching this regex, within
             the timeout (no hang); shell: steps after it still run
    timeout: seconds allowed per step (default 600)
    absent:  paths (after substitution) that must not exist afterwards

Usage: harness.py CASE --ranks P --aptq BIN --data DIR [--mpiexec mpirun]
       harness.py CASE ... --regenerate   (rewrite the expected output)
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_case(path):
    case = {"run": [], "steps": [], "rtol": 1e-6, "atol": 0.0, "absent": []}
    for raw in open(path):
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            sys.exit(f"{path}: expected 'key: value', got {line!r}")
        key, value = key.strip(), value.strip()
        if key in ("run", "shell"):
            case["steps"].append((key, value))
        elif key in ("rtol", "atol"):
            case[key] = float(value)
        elif key == "absent":
            case["absent"] += value.split()
        elif key in ("ranks", "filter", "output", "error", "timeout"):
            case[key] = value
        else:
            sys.exit(f"{path}: unknown key {key!r}")
    return case


def tokens(line):
    return line.replace(",", " ").replace("(", " ").replace(")", " ").split()


def compare(got, want, rtol, atol):
    if len(got) != len(want):
        return f"{len(got)} output lines, expected {len(want)}"
    for n, (g, w) in enumerate(zip(got, want), 1):
        tg, tw = tokens(g), tokens(w)
        if len(tg) != len(tw):
            return f"line {n}: got {g!r}, expected {w!r}"
        for a, b in zip(tg, tw):
            if NUMBER.match(a) and NUMBER.match(b):
                x, y = float(a), float(b)
                if abs(x - y) > atol + rtol * abs(y):
                    return f"line {n}: {x!r} differs from expected {y!r} (rtol {rtol}, atol {atol})"
            elif a != b:
                return f"line {n}: got {g!r}, expected {w!r}"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--ranks", type=int, required=True)
    ap.add_argument("--aptq", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mpiexec", default="mpirun")
    ap.add_argument("--regenerate", action="store_true")
    args = ap.parse_args()
    case = parse_case(args.case)
    name = os.path.splitext(os.path.basename(args.case))[0]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    tmp = tempfile.mkdtemp(prefix=f"aptq-{name}-np{args.ranks}-")
    subst = {"DATA": os.path.abspath(args.data), "TMP": tmp, "RANKS": str(args.ranks),
             "APTQ": os.path.abspath(args.aptq), "PY": sys.executable,
             "BUILD": os.path.dirname(os.path.abspath(args.aptq)),
             "TESTS": os.path.dirname(os.path.abspath(__file__))}

    def expand(s):
        return re.sub(r"\$\{(\w+)\}", lambda m: subst[m.group(1)], s)

    timeout = float(case.get("timeout", 600))
    stdout_all = []
    failed = None
    last_run = max([i for i, (kind, _) in enumerate(case["steps"]) if kind == "run"], default=-1)
    for i, (kind, value) in enumerate(case["steps"]):
        last = i == last_run
        if kind == "run":
            cmd = [args.mpiexec, "--oversubscribe", "-n", str(args.ranks), subst["APTQ"]] + shlex.split(expand(value))
        else:
            cmd = ["bash", "-c", expand(value)]
        print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            failed = f"step {i + 1} did not finish within {timeout:.0f} s (hang?)"
            break
        sys.stdout.write(p.stdout)
        sys.stdout.write(p.stderr)
        stdout_all += p.stdout.splitlines()
        if last and "error" in case:
            errors = [l for l in p.stderr.splitlines() if l.startswith("aptq: error")]
            if p.returncode == 0:
                failed = "expected a failure, but the command succeeded"
            elif len(errors) != 1:
                failed = f"expected exactly one 'aptq: error' line on stderr, got {len(errors)}"
            elif not re.search(case["error"], errors[0]):
                failed = f"error line {errors[0]!r} does not match {case['error']!r}"
            if failed:
                break
            continue
        if p.returncode != 0:
            failed = f"step {i + 1} exited with status {p.returncode}"
            break
    if not failed:
        for path in case["absent"]:
            path = expand(path)
            if os.path.exists(path):
                failed = f"{path} exists but must not"
        leftovers = [f for f in os.listdir(tmp) if ".partial" in f]
        if leftovers:
            failed = f"temporary files left behind: {leftovers}"
    if not failed and "output" in case:
        lines = [l for l in stdout_all if re.search(case.get("filter", ""), l)]
        expected = os.path.join(os.path.dirname(os.path.abspath(args.case)), "..", "output", expand(case["output"]))
        if args.regenerate:
            with open(expected, "w") as f:
                f.write("\n".join(lines) + "\n")
            print(f"wrote {expected}")
        else:
            want = open(expected).read().splitlines()
            failed = compare(lines, want, case["rtol"], case["atol"])
    shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"FAILED {name} np{args.ranks}: {failed}")
        sys.exit(1)
    print(f"PASSED {name} np{args.ranks}")


if __name__ == "__main__":
    main()
