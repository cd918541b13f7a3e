#!/usr/bin/python3
"""A variant of a Hugging Face checkpoint for the tests: OUT gets symbolic
links to every file of SRC but config.json, which is SRC's with the given
keys set (KEY=JSON) or removed (-KEY). The weights are not copied.
  make_variant.py SRC OUT KEY=JSON|-KEY ..."""
import json
import os
import sys

src, out, edits = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(out, exist_ok=True)
for name in os.listdir(src):
    if name != "config.json" and not os.path.lexists(os.path.join(out, name)):
        os.symlink(os.path.abspath(os.path.join(src, name)), os.path.join(out, name))
with open(os.path.join(src, "config.json")) as f:
    cfg = json.load(f)
for e in edits:
    if e.startswith("-"):
        cfg.pop(e[1:], None)
    else:
        key, value = e.split("=", 1)
        cfg[key] = json.loads(value)
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
