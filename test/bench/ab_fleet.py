#!/usr/bin/env python3
"""Makes a namespace holding N converged pod Workers for ab_rss.py and ab_ready.py: creates the
Workers (wc-bench create), runs BINARY until every one is Running (wc-bench watch), stops it.
The namespace is left for the A/B runs; `bench.py` cleans its own namespaces only.

    ab_fleet.py NAMESPACE N BINARY      (test bed from WC_TESTBED, default /tmp/wc-bed-bench)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ns, n, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    bed_dir = os.environ.get("WC_TESTBED", "/tmp/wc-bed-bench")
    work = os.path.join(bench.BUILD, "ab-fleet-" + time.strftime("%H%M%S"))
    os.makedirs(work, exist_ok=True)
    bed = bench.Bed(bench.load_bed(os.path.join(bed_dir, "env")), work)
    r = bench.Runner(bed, work, binary, os.path.join(bench.BUILD, "wc-bench"), 4)
    created = r.create_workers(ns, "pod", n)
    res = r.converge(ns, "pod", n, "controller", timeout=min(max(120, 0.6 * n), 3600))
    print(f"{ns}: created {created}, all Running after {res.get('t_running_s')} s "
          f"({res.get('running')}/{n}), steady RSS at convergence {res.get('converge_rss_kib')} KiB", flush=True)
    return 0 if res.get("running") == n else 1


if __name__ == "__main__":
    sys.exit(main())
