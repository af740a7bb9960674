#!/usr/bin/env python3
"""Merges the results.json of several bench.py invocations on the same bed (more rounds of the
same plan, run one after the other) into one, and prints bench.py's table of it.

    python3 test/bench/merge.py OUT_DIR RESULTS.json [RESULTS.json ...]

Rounds are renumbered so that each file's rounds follow the previous file's (a round stays a
product/floor pair run back to back; ratios are still taken within a round). Writes
OUT_DIR/results.json (the runs, and each source's start, end and load) and OUT_DIR/table.md.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    outdir, sources = sys.argv[1], sys.argv[2:]
    merged: dict = {"kind": "merged", "sources": [], "runs": []}
    base = 0
    for path in sources:
        with open(path) as f:
            r = json.load(f)
        merged["sources"].append({k: r.get(k) for k in ("started", "finished", "load_start", "load_end", "plan")}
                                 | {"file": os.path.basename(path), "round_offset": base})
        merged["runs"] += [dict(run, round=run["round"] + base) for run in r["runs"]]
        base = 1 + max((run["round"] for run in merged["runs"]), default=-1)
        for k in ("binary_bytes", "concurrency"):
            merged.setdefault(k, r.get(k))
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(merged, f, indent=1, default=str)
    table = bench.render_table(merged)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
