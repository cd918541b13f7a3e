#!/usr/bin/python3
"""Print fields of an aptq JSON report as 'report KEY VALUE' lines for the
harness to compare (KEY a path, parts separated by '/': layers/0/name);
--expect KEY=VALUE fails unless the field equals VALUE (as Python's str
writes it); --same-as OTHER.json compares the listed keys with OTHER's
instead of printing them: each must be equal exactly (KEY=OTHERKEY names
the field of OTHER to compare with), and one line says how many were."""
import json
import sys


def get(report, key):
    node = report
    for part in key.split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


args = sys.argv[1:]
report = json.load(open(args[0]))
expect = []
keys = []
other = None
i = 1
while i < len(args):
    if args[i] == "--expect":
        expect.append(args[i + 1].split("=", 1))
        i += 2
    elif args[i] == "--same-as":
        other = json.load(open(args[i + 1]))
        i += 2
    else:
        keys.append(args[i])
        i += 1
for key in keys:
    if other is None:
        print("report", key, get(report, key))
        continue
    mine, theirs = (key.split("=", 1) + [key])[:2]
    if get(report, mine) != get(other, theirs):
        sys.exit(f"report {mine} is {get(report, mine)!r}, the other report's {theirs} {get(other, theirs)!r}")
if other is not None:
    print(f"report same as the other report: {len(keys)} fields")
for key, value in expect:
    if str(get(report, key)) != value:
        sys.exit(f"report {key} is {get(report, key)!r}, expected {value}")
