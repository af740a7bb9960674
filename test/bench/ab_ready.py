#!/usr/bin/env python3
"""A/B of startup: restarts each given controller binary in turn, REPS rounds, on a namespace
that already holds converged Workers (pod backend); for each start prints exec -> /readyz 200,
the controller's CPU seconds and peak RSS (VmHWM) at that moment, then the medians. Binaries
alternate within a round so a change in the machine's load hits both sides alike.

    ab_ready.py NAMESPACE REPS BINARY...      (test bed from WC_TESTBED, default /tmp/wc-bed-bench)
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ns, reps, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    bed_dir = os.environ.get("WC_TESTBED", "/tmp/wc-bed-bench")
    work = os.path.join(bench.BUILD, "ab-ready-" + time.strftime("%H%M%S"))
    os.makedirs(work, exist_ok=True)
    bed = bench.Bed(bench.load_bed(os.path.join(bed_dir, "env")), work)
    got = {b: [] for b in bins}
    for _ in range(max(1, min(reps, 20))):
        for b in bins:
            r = bench.Runner(bed, work, b, "", 4)
            p, ready, _, st = r.start_until_ready(ns, "pod")
            r.stop(p)
            if ready is None:
                print(f"{os.path.basename(b)}: not ready within 60 s", flush=True)
                continue
            got[b].append((ready, st.get("cpu_s"), st.get("VmHWM")))
            print(f"{os.path.basename(b)}: ready {ready:.3f} s, CPU {st.get('cpu_s')} s, peak {st.get('VmHWM')} KiB",
                  flush=True)
            time.sleep(1)
    for b, runs in got.items():
        if runs:
            print(f"{os.path.basename(b)}: median ready {statistics.median(x[0] for x in runs):.3f} s, "
                  f"CPU {statistics.median(x[1] for x in runs):.2f} s, peak {statistics.median(x[2] for x in runs):.0f} KiB "
                  f"({len(runs)} starts)", flush=True)


if __name__ == "__main__":
    main()
