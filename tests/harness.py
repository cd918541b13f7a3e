#!/usr/bin/python3
"""PETSc-style test harness for aptq.

A case file (tests/cases/NAME.case) holds 'key: value' lines; blank lines
and lines starting with # are ignored. Settings (unindented):
    ranks:   rank counts to run at (CTest registers one test per count;
             tests/CMakeLists.txt reads this line with a regex, so it must
             start the line)
    heavy:   rank counts (a subset of ranks:) whose test repeats what another
             count already checks and costs minutes: CTest labels them
             "heavy", and the sanitized run (tools/run-sanitized.sh) leaves
             them out to keep CI inside its time (the plain run keeps them)
    filter:  regular expression; only stdout lines matching it are compared
             (the lines of same: steps are always compared)
    output:  expected output file under tests/output/ (compared line by
             line: words exactly, numbers within tolerance); may use
             ${RANKS} for outputs that name the rank count
    rtol, atol: numeric tolerance (default rtol 1e-6, atol 0); under the
             sanitizers (APTQ_SANITIZED set, tools/run-sanitized.sh) rtol is
             at least SANITIZED_RTOL: an instrumented build compiles floating
             point differently (contractions, vectorization), and a low-bit
             quantizer turns a last-bit difference into a flipped code; that
             run checks memory safety, the plain run the figures
    error:   the last run: step must fail: exit != 0, exactly one line
             starting "aptq: error" on stderr, matching this regex, within
             the timeout (no hang); the steps after it still run
    timeout: seconds allowed per step (default 600)
    absent:  paths that must not exist afterwards

Steps, run in order:
    run:     an aptq command line, run on --ranks ranks
    serial:  the same on 1 rank, whatever --ranks is (a reference run)
    shell:   a shell command (bash -c)
    same:    [h5diff options] A B [/OBJECT ...]
             files A and B (paths under ${TMP}, given relative to it) are
             identical: for HDF5 files (name ending .h5, or objects given)
             'h5diff -q [options] A B OBJ OBJ' for every object (default
             /layers), otherwise 'cmp'; prints "same: A B OBJECTS" into
             the compared output
    same_as_1_rank: [h5diff options] FILE ... [/OBJECT ...]
             reruns on 1 rank the last run: step whose --output= is FILE
             (the last run: step if none is), with its --output=, --report=,
             --logits= and --checkpoint= paths moved from ${TMP} into
             ${TMP}/np1 (its stdout is not compared), then checks as same:
             each FILE against its np1 copy (one rerun however many
             same_as_1_rank steps name the run); prints "same as 1 rank:
             FILE OBJECTS" for each FILE

Variables: ${NAME} in a value is replaced by the variable's value (not in
ranks:, filter: and error:, which are taken as written).
Built in: ${DATA} the shared data folder, ${TMP} a fresh folder for the
test, ${RANKS} the rank count, ${APTQ} the binary, ${BUILD} its folder,
${PY} this Python, ${TESTS} the tests folder; then those of
tests/cases/common.vars (models, token files: ${WT2}, ${BROWN}, ...),
read before every case; then the case's own:
    set:     NAME = value   defines ${NAME} from here on (value expanded
             now, so it may use the variables defined before it)
    args:    options appended to every following run: and serial: line
             (replacing the args: before it; 'args:' alone clears them)

Variants (PETSc's {{a b}}; for: does what a PETSc testset with a loop would):
    {{a b c}} in a step line runs the step once per value, in order ("" is
             an empty value); several on one line: every combination, the
             first varying slowest; the same {{a b c}} written twice on a
             line is one variant (both places take the same value)
    for: NAME in a b c
             repeats the indented lines under it once per value, with
             ${NAME} set (set: and args: inside a block end with it; a run
             gets the args: of every enclosing level, outer first)

Usage: harness.py CASE --ranks P --aptq BIN --data DIR [--mpiexec mpirun]
       harness.py CASE ... --regenerate   (rewrite the expected output)
       harness.py CASE --show [--ranks P]  (print the expanded steps only)
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
VARIABLE = re.compile(r"\$\{(\w+)\}")
VARIANT = re.compile(r"\{\{(.*?)\}\}")
SETTINGS = ("ranks", "heavy", "filter", "output", "rtol", "atol", "error", "timeout", "absent")
STEPS = ("run", "serial", "shell", "same", "same_as_1_rank")
MOVED_TO_NP1 = ("output", "report", "logits", "checkpoint")  # keys of the files a rerun writes
H5DIFF_VALUE_OPTIONS = ("-d", "-p", "-n")  # h5diff options whose value is the next word
COMMON_VARS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases", "common.vars")


class CaseError(Exception):
    pass


def read_lines(path):
    """(where, indent, key, value) for every non-blank, non-comment line."""
    lines = []
    for n, raw in enumerate(open(path), 1):
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{n}"
        key, sep, value = line.partition(":")
        if not sep or not re.fullmatch(r"\s*\w+\s*", key):
            raise CaseError(f"{where}: expected 'key: value', got {line!r}")
        lines.append((where, len(key) - len(key.lstrip()), key.strip(), value.strip()))
    return lines


def parse_block(lines, i, indent):
    """Nodes of the block at this indentation from lines[i]: (where, key, value, children)."""
    nodes = []
    while i < len(lines) and lines[i][1] >= indent:
        where, ind, key, value = lines[i]
        if ind > indent:
            raise CaseError(f"{where}: indented line outside a for: block")
        i += 1
        children = []
        if key == "for":
            if i >= len(lines) or lines[i][1] <= indent:
                raise CaseError(f"{where}: for: needs indented lines under it")
            children, i = parse_block(lines, i, lines[i][1])
        nodes.append((where, key, value, children))
    return nodes, i


def substitute(text, env, where):
    def value(m):
        if m.group(1) not in env:
            raise CaseError(f"{where}: unknown variable ${{{m.group(1)}}}")
        return env[m.group(1)]

    return VARIABLE.sub(value, text)


def variants(text, where):
    """The lines a step line with {{a b}} groups stands for: every combination of
    the groups' values, the first group varying slowest; a group written twice
    is one variant (both places take the same value)."""
    groups = list(dict.fromkeys(m.group(1) for m in VARIANT.finditer(text)))
    lines = [{}]
    for g in groups:
        values = shlex.split(g)
        if not values:
            raise CaseError(f"{where}: empty {{{{}}}}")
        lines = [dict(chosen, **{g: v}) for chosen in lines for v in values]
    return [VARIANT.sub(lambda m: chosen[m.group(1)], text) for chosen in lines]


def split_same(value, tmp, where):
    """h5diff options, files (absolute, under tmp) and objects of a same: line."""
    opts, files, objects = [], [], []
    words = shlex.split(value)
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("-"):
            opts.append(w)
            if w in H5DIFF_VALUE_OPTIONS:
                if i + 1 == len(words):
                    raise CaseError(f"{where}: h5diff option {w} needs a value")
                opts.append(words[i + 1])
                i += 1
        elif w.startswith(tmp + "/"):
            files.append(w)
        elif w.startswith("/"):
            objects.append(w)
        else:
            files.append(os.path.join(tmp, w))
        i += 1
    return opts, files, objects


def moved_to_np1(argv, tmp, where):
    """argv with the paths of MOVED_TO_NP1 keys moved from tmp to tmp/np1."""
    out = []
    for a in argv:
        key, eq, path = a[2:].partition("=")
        if a.startswith("--") and eq and key in MOVED_TO_NP1:
            if not path.startswith(tmp + "/"):
                raise CaseError(f"{where}: cannot rerun on 1 rank: --{key}={path} is not under ${{TMP}}")
            a = f"--{key}={os.path.join(tmp, 'np1', os.path.relpath(path, tmp))}"
        out.append(a)
    return out


def outputs_of(argv):
    return [a[len("--output="):] for a in argv if a.startswith("--output=")]


def expand_case(path, env):
    """The case's settings and its steps with variants, variables and args expanded.

    A step is a dict: kind (run, serial, shell, same, same_as_1_rank), where,
    and argv (run, serial), command (shell), or opts, files, objects (same;
    same_as_1_rank also rerun: the index of the run: step it reruns)."""
    case = {"rtol": 1e-6, "atol": 0.0, "absent": []}
    steps = []
    tmp = env["TMP"]

    def walk(nodes, env, outer_args, top):
        env = dict(env)
        args = []
        for where, key, value, children in nodes:
            if key in SETTINGS:
                if not top:
                    raise CaseError(f"{where}: {key}: belongs at the top level, not in a for: block")
                if VARIANT.search(value):
                    raise CaseError(f"{where}: {{{{}}}} variants go in step lines")
                if key in ("rtol", "atol"):
                    case[key] = float(value)
                elif key == "absent":
                    case["absent"] += substitute(value, env, where).split()
                elif key in ("output", "timeout"):
                    case[key] = substitute(value, env, where)
                else:
                    case[key] = value  # regular expressions (filter, error) and ranks: as written
            elif key == "set":
                m = re.fullmatch(r"(\w+)\s*=\s*(.*)", value)
                if not m:
                    raise CaseError(f"{where}: expected 'set: NAME = value'")
                if VARIANT.search(value):
                    raise CaseError(f"{where}: {{{{}}}} variants go in step lines (or use for:)")
                env[m.group(1)] = substitute(m.group(2), env, where)
            elif key == "args":
                if VARIANT.search(value):
                    raise CaseError(f"{where}: {{{{}}}} variants go in step lines (or use for:)")
                args = shlex.split(substitute(value, env, where))
            elif key == "for":
                m = re.fullmatch(r"(\w+)\s+in\s+(.+)", value)
                if not m:
                    raise CaseError(f"{where}: expected 'for: NAME in VALUE ...'")
                for v in shlex.split(m.group(2)):
                    walk(children, dict(env, **{m.group(1): substitute(v, env, where)}), outer_args + args, False)
            elif key in STEPS:
                for text in variants(value, where):
                    text = substitute(text, env, where)
                    step = {"kind": key, "where": where}
                    if key in ("run", "serial"):
                        step["argv"] = shlex.split(text) + outer_args + args
                    elif key == "shell":
                        step["command"] = text
                    else:
                        step["opts"], step["files"], step["objects"] = split_same(text, tmp, where)
                        if key == "same" and len(step["files"]) != 2:
                            raise CaseError(f"{where}: same: compares two files, got {len(step['files'])}")
                        if key == "same_as_1_rank":
                            if not step["files"]:
                                raise CaseError(f"{where}: same_as_1_rank: names no file")
                            runs = [i for i, s in enumerate(steps) if s["kind"] == "run"]
                            named = [i for i in runs if step["files"][0] in outputs_of(steps[i]["argv"])]
                            if not runs:
                                raise CaseError(f"{where}: same_as_1_rank: no run: step before it")
                            step["rerun"] = (named or runs)[-1]
                            step["argv"] = moved_to_np1(steps[step["rerun"]]["argv"], tmp, where)
                    steps.append(step)
            else:
                raise CaseError(f"{where}: unknown key {key!r}")

    common, _ = parse_block(read_lines(COMMON_VARS), 0, 0)
    if any(key != "set" for _, key, _, _ in common):
        raise CaseError(f"{COMMON_VARS}: only set: lines belong here")
    nodes, _ = parse_block(read_lines(path), 0, 0)
    walk(common + nodes, env, [], True)
    if not set(case.get("heavy", "").split()) <= set(case.get("ranks", "").split()):
        raise CaseError(f"{path}: heavy: names a rank count that ranks: does not list")
    return case, steps


def tokens(line):
    return line.replace(",", " ").replace("(", " ").replace(")", " ").split()


# the figures' tolerance under the sanitizers (see the docstring)
SANITIZED_RTOL = 2e-2


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


def show(steps, tmp):
    """The expanded steps, one line each (--show)."""
    def join(argv):
        return " ".join(shlex.quote(a) if not a or re.search(r"\s", a) else a for a in argv)

    for s in steps:
        if s["kind"] in ("run", "serial"):
            print(f"{s['kind']}: " + join(s["argv"]))
        elif s["kind"] == "shell":
            print(f"shell: {s['command']}")
        else:
            if s["kind"] == "same_as_1_rank":
                print("same_as_1_rank, rerun: " + join(s["argv"]))
            files = [os.path.relpath(f, tmp) for f in s["files"]]
            print(f"{s['kind']}: " + " ".join(s["opts"] + files + s["objects"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--ranks", type=int, default=None)
    ap.add_argument("--aptq")
    ap.add_argument("--data")
    ap.add_argument("--mpiexec", default="mpirun")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--show", action="store_true", help="print the expanded steps and exit")
    args = ap.parse_args()
    name = os.path.splitext(os.path.basename(args.case))[0]
    if args.show:
        subst = {k: "${%s}" % k for k in ("DATA", "TMP", "APTQ", "PY", "BUILD", "TESTS")}
        subst["RANKS"] = str(args.ranks) if args.ranks else "${RANKS}"
        try:
            _, steps = expand_case(args.case, subst)
        except CaseError as e:
            sys.exit(f"harness: {e}")
        show(steps, subst["TMP"])
        return
    if args.ranks is None or not args.aptq or not args.data:
        ap.error("--ranks, --aptq and --data are required")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    tmp = tempfile.mkdtemp(prefix=f"aptq-{name}-np{args.ranks}-")
    subst = {"DATA": os.path.abspath(args.data), "TMP": tmp, "RANKS": str(args.ranks),
             "APTQ": os.path.abspath(args.aptq), "PY": sys.executable,
             "BUILD": os.path.dirname(os.path.abspath(args.aptq)),
             "TESTS": os.path.dirname(os.path.abspath(__file__))}
    try:
        case, steps = expand_case(args.case, subst)
    except CaseError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"FAILED {name} np{args.ranks}: {e}")
        sys.exit(1)

    timeout = float(case.get("timeout", 600))
    output = []  # (always compared, line)
    failed = None
    rerun_done = set()

    def execute(cmd, quiet=False):
        """Run one command (list: exec, str: bash -c); None on timeout."""
        shown = cmd if isinstance(cmd, str) else " ".join(shlex.quote(c) for c in cmd)
        print("+ " + shown, flush=True)
        try:
            p = subprocess.run(["bash", "-c", cmd] if isinstance(cmd, str) else cmd, env=env,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        sys.stdout.write(p.stdout)
        sys.stdout.write(p.stderr)
        return p

    def aptq(argv, ranks):
        return [args.mpiexec, "--oversubscribe", "-n", str(ranks), subst["APTQ"]] + argv

    def same(step, a, b):
        """None if files a and b are the same (as step's same: line says), else why not."""
        objects = step["objects"] or (["/layers"] if a.endswith(".h5") else [])
        if not objects:
            p = execute(["cmp", a, b])
            return None if p and p.returncode == 0 else f"{a} and {b} differ"
        for obj in objects:
            p = execute(["h5diff", "-q"] + step["opts"] + [a, b, obj, obj])
            if p is None or p.returncode != 0:
                why = "h5diff timed out" if p is None else f"h5diff exit status {p.returncode}"
                report = subprocess.run(["h5diff", "-r"] + step["opts"] + [a, b, obj, obj], env=env,
                                        capture_output=True, text=True, timeout=timeout)
                print("\n".join((report.stdout + report.stderr).splitlines()[:40]))
                return f"{a} and {b} differ in {obj} ({why})"
        return None

    def line(step, *files):
        objects = step["objects"] or (["/layers"] if files[0].endswith(".h5") else [])
        opts = f" (h5diff {' '.join(step['opts'])})" if step["opts"] else ""
        return " ".join([os.path.relpath(f, tmp) for f in files] + objects) + opts

    last_run = max([i for i, s in enumerate(steps) if s["kind"] == "run"], default=-1)
    for i, step in enumerate(steps):
        kind = step["kind"]
        at = f"step {i + 1} ({step['where']})"
        if kind in ("same", "same_as_1_rank"):
            if kind == "same":
                failed = same(step, *step["files"])
                message = "same: " + line(step, *step["files"])
            else:
                if step["rerun"] not in rerun_done:
                    for a in step["argv"]:
                        key, eq, path = a[2:].partition("=")
                        if a.startswith("--") and eq and key in MOVED_TO_NP1:
                            os.makedirs(os.path.dirname(path), exist_ok=True)
                    p = execute(aptq(step["argv"], 1))
                    if p is None:
                        failed = f"{at}: the 1-rank rerun did not finish within {timeout:.0f} s (hang?)"
                        break
                    if p.returncode != 0:
                        failed = f"{at}: the 1-rank rerun exited with status {p.returncode}"
                        break
                    rerun_done.add(step["rerun"])
                messages = []
                for f in step["files"]:
                    np1 = os.path.join(tmp, "np1", os.path.relpath(f, tmp))
                    failed = failed or same(step, f, np1)
                    messages.append("same as 1 rank: " + line(step, f))
                message = "\n".join(messages)
            if failed:
                failed = f"{at}: {failed}"
                break
            print(message, flush=True)
            output += [(True, m) for m in message.splitlines()]
            continue
        if kind == "shell":
            p = execute(step["command"])
        else:
            p = execute(aptq(step["argv"], args.ranks if kind == "run" else 1))
        if p is None:
            failed = f"{at} did not finish within {timeout:.0f} s (hang?)"
            break
        output += [(False, l) for l in p.stdout.splitlines()]
        if i == last_run and "error" in case:
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
            failed = f"{at} exited with status {p.returncode}"
            break
    if not failed:
        for path in case["absent"]:
            if os.path.exists(path):
                failed = f"{path} exists but must not"
        for folder in (tmp, os.path.join(tmp, "np1")):
            leftovers = [f for f in os.listdir(folder) if ".partial" in f] if os.path.isdir(folder) else []
            if leftovers:
                failed = f"temporary files left behind in {folder}: {leftovers}"
    if not failed and "output" in case:
        lines = [l for always, l in output if always or re.search(case.get("filter", ""), l)]
        expected = os.path.join(os.path.dirname(os.path.abspath(args.case)), "..", "output", case["output"])
        if args.regenerate:
            with open(expected, "w") as f:
                f.write("\n".join(lines) + "\n")
            print(f"wrote {expected}")
        else:
            want = open(expected).read().splitlines()
            rtol = max(case["rtol"], SANITIZED_RTOL) if os.environ.get("APTQ_SANITIZED") else case["rtol"]
            failed = compare(lines, want, rtol, case["atol"])
    shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"FAILED {name} np{args.ranks}: {failed}")
        sys.exit(1)
    print(f"PASSED {name} np{args.ranks}")


if __name__ == "__main__":
    main()
