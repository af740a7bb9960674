"""Issue 5 test 10: with 200 steady Workers and nothing changing, the controller makes no
write requests over a minute.

Counting method: the API server's audit log (WC_AUDIT_LOG, JSON lines) filtered to the
controller's ServiceAccount and the write verbs, when the bed provides it; otherwise the
API server's apiserver_request_total deltas for POST/PUT/PATCH/DELETE on workers, pods,
serviceaccounts and events (all users: the test itself makes no writes while it measures,
and kwok makes none for a steady Pod). The method used and the figure are
printed (run pytest with -s to see them). A calibration window first proves the counter
sees a write.
"""

from __future__ import annotations

import os
import time

import controller_harness as h

N_WORKERS = int(os.environ.get("WC_E2E_STEADY_WORKERS", "200"))
WINDOW_S = float(os.environ.get("WC_E2E_STEADY_WINDOW", "60"))


def test_no_writes_at_steady_state(tb, api, core, custom, namespace):
    ns = namespace
    with h.controller_for(tb, core, ns, f"ctl-{h.unique_suffix()}") as ctl:
        t0 = time.monotonic()
        for i in range(N_WORKERS):
            h.create_worker(custom, ns, f"steady-{i:03d}")

        def all_running():
            ws = h.list_workers(custom, ns)
            return len(ws) == N_WORKERS and all((w.get("status") or {}).get("phase") == "Running" for w in ws)

        h.wait_for_value(all_running, 180, f"{N_WORKERS} Workers Running", interval=1.0)
        converge = time.monotonic() - t0
        print(f"{N_WORKERS} Workers Running after {converge:.1f}s")
        # Calibration: the counter must see a write — one PATCH of a Worker's annotations by
        # the test (annotations do not shape the Pod), and the reconcile it triggers must
        # itself write nothing.
        calib = h.WriteCounter(tb, tb.WC_ADMIN_USER)  # the test's own writes (the bed's components write too)
        calib_ctl = h.WriteCounter(tb, ctl.username)
        with calib, calib_ctl:
            h.patch_worker(custom, ns, "steady-000", {"metadata": {"annotations": {"e2e/calibrate": "1"}}})
            time.sleep(3)
        print(f"calibration ({calib.method}): {calib.writes}; the controller: {calib_ctl.writes}")
        assert calib.count == 1, f"want exactly the test's own PATCH: {calib.writes}"
        assert calib_ctl.count == 0, f"the reconcile of an annotation change wrote: {calib_ctl.writes}"
        time.sleep(5)
        counter = h.WriteCounter(tb, ctl.username)
        with counter:
            time.sleep(WINDOW_S)
        print(f"steady state: {counter.count} write requests in {WINDOW_S:.0f}s ({counter.method}): {counter.writes}")
        assert counter.count == 0, f"{counter.method}: {counter.writes}"
        assert ctl.running()
        ctl.stop()
