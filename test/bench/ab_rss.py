#!/usr/bin/env python3
"""A/B of steady RSS: runs each given controller binary in turn on a namespace that already
holds N converged Workers (pod backend), waits until /readyz and SETTLE seconds, reads
/proc/PID/status, checks it made no writes, stops it. Used to measure a memory change.

    ab_rss.py NAMESPACE N SETTLE BINARY...      (test bed from WC_TESTBED, default /tmp/wc-bed-bench)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ns, n, settle, bins = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
    bed_dir = os.environ.get("WC_TESTBED", "/tmp/wc-bed-bench")
    work = os.path.join(bench.BUILD, "ab-" + time.strftime("%H%M%S"))
    os.makedirs(work, exist_ok=True)
    bed = bench.Bed(bench.load_bed(os.path.join(bed_dir, "env")), work)
    for b in bins:
        r = bench.Runner(bed, work, b, "", 4)
        p, ready, maddr, _ = r.start_until_ready(ns, "pod")
        time.sleep(settle)
        st = bench.proc_status(p.pid)
        m = bench.scrape(maddr)
        r.stop(p)
        w = sum(v for k, v in m.items() if k != "GET")
        print(f"{os.path.basename(b)}: N={n} ready {ready:.3f} s, RSS {st.get('VmRSS')} KiB, peak {st.get('VmHWM')} KiB, "
              f"cpu {st.get('cpu_s')} s, requests {dict(m)}, writes {w}", flush=True)


if __name__ == "__main__":
    main()
