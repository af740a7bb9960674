"""Issue 15 item 3 on the real bed: a replica that loses its lease stops writing at once.

The leader talks to the API server through a loopback proxy (latency_proxy.py). The test holds
every request it sends from then on — watches already open keep delivering — and creates a
Worker: the leader's reconcile sends its writes into the hold, and its lease renewals hang too,
so the renew deadline (10 s) passes and it loses the lease with requests in flight. It must
cancel them and exit non-zero at once (controller-runtime's zero grace), not drain them for
15 s while a new leader may already act. The held bytes are then dropped, never delivered: the
API server's audit log shows no write from it after the hold began.
"""

from __future__ import annotations

import time

import controller_harness as h
from conftest import unique
from latency_proxy import LatencyProxy


def test_losing_the_lease_cancels_in_flight_writes_and_exits_at_once(tb, api, core, custom, namespace):
    ns = namespace
    px = LatencyProxy("127.0.0.1", int(tb.WC_APISERVER_PORT))
    ctl = h.ControllerProcess(tb, core, ns, unique("ctl"), env={"HICLAW_LEADER_ELECT": "true"})
    try:
        ctl.server_url = px.url()
        ctl.setup_identity()
        ctl.start()
        ctl.wait_log("became leader", timeout=30)
        h.create_worker(custom, ns, "before")
        h.wait_phase(custom, ns, "before", "Running", timeout=30)

        mark = h.audit_offset(tb)
        px.hold_requests = True
        t_hold = time.monotonic()
        h.create_worker(custom, ns, "during")  # the leader sees it (watch) and writes into the hold
        ctl.wait_log("lost leader lease", timeout=30)
        t_lost = time.monotonic()
        try:
            rc = ctl.proc.wait(timeout=30)
        except Exception:
            raise AssertionError(f"still running 30 s after losing the lease:\n{ctl.log_tail()}")
        t_exit = time.monotonic()
        print(f"lease lost {t_lost - t_hold:.1f}s after the hold; exited {t_exit - t_lost:.2f}s later, rc={rc}")
        assert rc == 1, ctl.log_tail()
        assert t_exit - t_lost < 5, f"exited {t_exit - t_lost:.1f}s after losing the lease: in-flight work drained"
        assert "every request cancelled" in ctl.log_text()
        px.close()  # whatever it had sent is dropped here, never delivered
        time.sleep(3)
        assert h.get_pod(core, ns, "during") is None
        late = [w for w in h.audit_writes(tb, mark, namespace=ns) if w["user"] == ctl.username]
        assert late == [], f"writes after the hold began: {late}"
    finally:
        px.close()
        ctl.close()
