#!/usr/bin/python3
"""The include graph of src/ is acyclic: a module (x.h with its x.c) may
include only modules that do not include it back, directly or through
others. Prints the modules in layers (each uses only earlier layers) and
fails on a cycle, naming it.
  check_includes.py SRC_DIR"""
import os
import re
import sys

src = sys.argv[1]
deps = {}
for f in os.listdir(src):
    if not f.endswith((".c", ".h")):
        continue
    mod = f[:-2]
    for line in open(os.path.join(src, f)):
        m = re.match(r'\s*#\s*include\s+"([^"]+)\.h"', line)
        if m and m.group(1) != mod:
            deps.setdefault(mod, set()).add(m.group(1))
    deps.setdefault(mod, set())
layers, placed = [], set()
while len(placed) < len(deps):
    layer = sorted(m for m in deps if m not in placed and deps[m] <= placed)
    if not layer:
        # a cycle: follow unplaced dependencies until a module repeats
        path = [sorted(m for m in deps if m not in placed)[0]]
        while True:
            nxt = sorted(d for d in deps[path[-1]] if d not in placed)[0]
            if nxt in path:
                cycle = path[path.index(nxt):] + [nxt]
                sys.exit("include cycle: " + " -> ".join(cycle))
            path.append(nxt)
    layers.append(layer)
    placed.update(layer)
for i, layer in enumerate(layers):
    print(f"layer {i}: {' '.join(layer)}")
print(f"include graph of {len(deps)} modules is acyclic ({len(layers)} layers)")
