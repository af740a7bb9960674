"""Soak: the controller over N reconciles (default 10,000), RSS sampled as it goes; optionally
under valgrind's memcheck, whose leak summary is the verdict. Run by `./build.sh soak
[--valgrind] [--reconciles N]` against a running test bed (WC_TESTBED); results are printed and
appended as JSON lines to test/soak/results.jsonl. Documented in RELIABILITY.md.

What drives the reconciles: W pod-backend Workers converge first; then the driver patches a
label on one Worker after another (round robin). Worker labels are copied onto the instance
and are part of its spec hash, so every patch makes the controller replace that Worker's Pod:
delete, create, Events, status Starting → Running (the kubelet stand-in answers) — the soak
walks the create/delete/status/Event paths, not just the no-op one. The workqueue coalesces
patches of a key already queued, so the loop runs until the controller's own counter
(controller_runtime_reconcile_total) says N more reconciles happened. Verdict: the controller
ran throughout, exited 0 on SIGTERM, every Worker ends with exactly one Running Pod, and (with
--valgrind) memcheck reports no error and nothing lost.

Bounded: at most 4 N patches and --max-minutes of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import controller_harness as h  # noqa: E402
from conftest import drop_namespace, make_namespace  # noqa: E402
from kubernetes import client, config  # noqa: E402


def reconciles(metrics_url: str) -> int:
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    return sum(int(float(m)) for m in re.findall(r'^controller_runtime_reconcile_total\{[^}]*\} (\S+)$', text, re.M))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TB:  # the bed's env file as attributes, like the e2e fixture
    def __init__(self, path: str):
        for line in open(path):
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export "):]
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                v = v.strip("'\"")
                setattr(self, k, v)
                os.environ.setdefault(k, v)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--valgrind", action="store_true")
    ap.add_argument("--reconciles", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--max-minutes", type=float, default=45)
    ap.add_argument("--out", default=os.path.join(HERE, "results.jsonl"))
    a = ap.parse_args()

    tb = TB(os.path.join(os.environ.get("WC_TESTBED", "/tmp/worker-controller-testbed"), "env"))
    config.load_kube_config(tb.KUBECONFIG)
    api = client.ApiClient()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = make_namespace(core, "soak")
    work = tempfile.mkdtemp(prefix="wc-soak-")
    binary = os.path.abspath(a.binary)
    vglog = os.path.join(work, "valgrind.log")
    if a.valgrind:
        wrapper = os.path.join(work, "under-valgrind")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec /usr/bin/valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible "
                    f"--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30 --log-file={vglog} "
                    f"{binary} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        binary = wrapper
    metrics_port = h.free_port()
    ctl = h.ControllerProcess(tb, core, ns, "soakctl", env={"HICLAW_METRICS_ADDR": f"127.0.0.1:{metrics_port}"},
                              workdir=work, binary_path=binary)
    ctl.setup_identity()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    result = {"binary": a.binary, "valgrind": a.valgrind, "workers": a.workers, "target_reconciles": a.reconciles,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rc = 1
    try:
        ctl.start(timeout=300)
        names = [f"soak-{i:03d}" for i in range(a.workers)]
        for n in names:
            h.create_worker(custom, ns, n)
        for n in names:
            h.wait_phase(custom, ns, n, "Running", timeout=600)
        time.sleep(5)
        pods_before = {p.metadata.uid for p in h.worker_pods(core, ns)}
        base = reconciles(metrics_url)
        samples = [(0, rss_kib(ctl.proc.pid))]
        print(f"converged {a.workers} Workers; reconciles so far {base}; RSS {samples[0][1]} KiB", flush=True)
        deadline = time.monotonic() + a.max_minutes * 60
        t0 = time.monotonic()
        patches, done, next_sample = 0, 0, 1000
        while done < a.reconciles and patches < 4 * a.reconciles and time.monotonic() < deadline:
            n = names[patches % len(names)]
            try:
                h.patch_worker(custom, ns, n, {"metadata": {"labels": {"soak.wc.test/tick": str(patches)}}})
            except Exception as e:  # the API server restarted under us (another suite): wait, go on
                print(f"  patch failed ({type(e).__name__}); retrying in 2 s", flush=True)
                time.sleep(2)
                continue
            patches += 1
            if patches % 50 == 0:
                done = reconciles(metrics_url) - base
                if done >= next_sample:
                    samples.append((done, rss_kib(ctl.proc.pid)))
                    print(f"  {done:6d} reconciles  RSS {samples[-1][1]:7d} KiB  ({time.monotonic() - t0:.0f} s)",
                          flush=True)
                    next_sample += 1000
                assert ctl.running(), ctl.log_tail()
        time.sleep(3)
        done = reconciles(metrics_url) - base
        samples.append((done, rss_kib(ctl.proc.pid)))
        def one_running_pod_each():
            for n in names:
                pods = h.worker_pods(core, ns, n)
                if len(pods) != 1 or pods[0].status.phase != "Running" or pods[0].metadata.deletion_timestamp:
                    return False
            return True
        converged = bool(h.wait_for_value(one_running_pod_each, 300, "one Running Pod per Worker", interval=2))
        pods_after = {p.metadata.uid for p in h.worker_pods(core, ns)}
        result.update(patches=patches, reconciles=done, seconds=round(time.monotonic() - t0, 1),
                      rss_samples_kib=samples, one_running_pod_each=converged,
                      pods_replaced=len(pods_before - pods_after) == len(pods_before))
        exit_rc, took = ctl.stop(timeout=120, expect_rc=None)
        result.update(exit_code=exit_rc, shutdown_s=round(took, 1))
        if a.valgrind:
            text = open(vglog).read()
            def grab(pat):
                m = re.search(pat, text)
                return m.group(1).replace(",", "") if m else None
            result.update(definitely_lost=grab(r"definitely lost: ([\d,]+) bytes"),
                          indirectly_lost=grab(r"indirectly lost: ([\d,]+) bytes"),
                          possibly_lost=grab(r"possibly lost: ([\d,]+) bytes"),
                          still_reachable=grab(r"still reachable: ([\d,]+) bytes"),
                          error_summary=grab(r"ERROR SUMMARY: ([\d,]+) errors"),
                          all_freed="All heap blocks were freed" in text)
            print(text[-3000:])
        rss = [s[1] for s in result.get("rss_samples_kib", [])[1:]]
        result["rss_growth_kib_after_first_1000"] = (rss[-1] - rss[0]) if len(rss) >= 2 else None
        ok = (result.get("reconciles", 0) >= a.reconciles and exit_rc == 0 and result.get("one_running_pod_each")
              and (not a.valgrind or (result.get("error_summary") == "0" and result.get("definitely_lost") == "0"
                                      and result.get("indirectly_lost") == "0")))
        rc = 0 if ok else 1
        result["ok"] = ok
    finally:
        ctl.close()
        drop_namespace(core, ns)
        with open(a.out, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result, indent=1))
    return rc


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
