#!/usr/bin/python3
"""Print fields of an aptq JSON report as 'report KEY VALUE' lines for the
harness to compare (KEY a path, parts separated by '/': layers/0/name);
--expect KEY=VALUE fails unless the field equals VALUE."""
import json
import sys

args = sys.argv[1:]
report = json.load(open(args[0]))
expect = []
keys = []
i = 1
while i < len(args):
    if args[i] == "--expect":
        expect.append(args[i + 1].split("=", 1))
        i += 2
    else:
        keys.append(args[i])
        i += 1
for key in keys:
    node = report
    for part in key.split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    print("report", key, node)
for key, value in expect:
    if str(report[key]) != value:
        sys.exit(f"report {key} is {report[key]!r}, expected {value}")
