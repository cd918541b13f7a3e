#!/usr/bin/python3
"""Function lengths and brace depths of the C sources, for reviews:
  function_lengths.py [--over N] [--depth D] FILE...
Lists every function longer than N lines (default 100) or nested deeper
than D levels (default 4) inside its body, then totals. Works on code laid
out by the project's .clang-format (a function opens with a line ending in
'{' at column 0 context and closes with '}' at column 0)."""
import re
import sys

START = re.compile(r"^[A-Za-z_][\w\s\*,()\[\]]*\b(\w+)\s*\([^;]*$")


def functions(path):
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        m = START.match(lines[i])
        if m and not lines[i].startswith(("typedef", "struct", "enum", "static const", "const")) or (
            m and lines[i].startswith("static") and "(" in lines[i]
        ):
            # the signature may span lines up to the opening brace
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith("{") and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith("{") and "=" not in lines[i].split("(")[0]:
                depth, deepest, k = 0, 0, j
                while k < len(lines):
                    code = re.sub(r'"([^"\\]|\\.)*"|\'([^\'\\]|\\.)*\'|/\*.*?\*/|//.*', "", lines[k])
                    for ch in code:
                        if ch == "{":
                            depth += 1
                            deepest = max(deepest, depth)
                        elif ch == "}":
                            depth -= 1
                    if depth == 0:
                        break
                    k += 1
                yield m.group(1), i + 1, k - i + 1, deepest - 1
                i = k
        i += 1


def main():
    args = sys.argv[1:]
    over, maxdepth = 100, 4
    if "--over" in args:
        n = args.index("--over")
        over = int(args[n + 1])
        del args[n : n + 2]
    if "--depth" in args:
        n = args.index("--depth")
        maxdepth = int(args[n + 1])
        del args[n : n + 2]
    allf = []
    for path in args:
        for name, line, length, depth in functions(path):
            allf.append((length, depth, f"{path}:{line}", name))
    flagged = [f for f in allf if f[0] > over or f[1] > maxdepth]
    print(f"{'lines':>6} {'depth':>5}  function")
    for length, depth, where, name in sorted(flagged, reverse=True):
        print(f"{length:6d} {depth:5d}  {name} ({where})")
    lengths = sorted(f[0] for f in allf)
    print(f"{len(allf)} functions; longest {lengths[-1] if lengths else 0} lines; "
          f"{sum(1 for f in allf if f[0] > over)} over {over} lines; {sum(1 for f in allf if f[1] > maxdepth)} deeper than {maxdepth}")


main()
