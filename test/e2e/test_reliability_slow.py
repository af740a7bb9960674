"""Issue 9, a slow API server: requests time out and are retried; shutdown still completes
within 30 s.

The controller talks to the bed's API server through test/e2e/latency_proxy.py (a TCP proxy
on loopback: `tc netem` would need CAP_NET_ADMIN and slow every other test bed on the host).

1. Latency on every request and response: Workers still converge.
2. The API server holds every new request (it accepts, never answers) while watches keep
   delivering: the controller's requests time out (30 s, the client's
   per-request limit), it says so, and it keeps retrying — it neither crashes nor gives up.
3. SIGTERM while the retried requests hang again (each could take 30 s more): the process
   exits 0 within 30 s — the drain gives up after 15 s and cancels what is in flight.
4. The API server answers again: the Workers created during the hang converge, one Pod each.
"""

from __future__ import annotations


import controller_harness as h
from conftest import unique
from latency_proxy import LatencyProxy


def test_slow_apiserver_requests_time_out_retry_and_shutdown_within_30s(tb, api, core, custom, namespace):
    ns = namespace
    with LatencyProxy("127.0.0.1", int(tb.WC_APISERVER_PORT), delay=0.05) as px:
        ctl = h.ControllerProcess(tb, core, ns, unique("slowctl"),
                                  env={"HICLAW_LOG_LEVEL": "debug"})
        ctl.server_url = px.url()
        ctl.setup_identity()
        try:
            ctl.start(timeout=120)
            # 1. slow but answering
            first = [f"slow-{i}" for i in range(8)]
            for n in first:
                h.create_worker(custom, ns, n)
            for n in first:
                h.wait_phase(custom, ns, n, "Running", timeout=120)

            # 2. hanging: every new request is held; watch events still arrive
            px.hold_requests = True
            mark = len(ctl.log_text())
            held = [f"held-{i}" for i in range(3)]
            for n in held:
                h.create_worker(custom, ns, n)
            h.wait_for_value(lambda: ctl.log_text()[mark:].count("timed out") >= 3, 100,
                             "three requests timing out after the default 30 s", interval=0.5)
            held_before = px.held_chunks
            h.wait_for_value(lambda: px.held_chunks > held_before, 30, "the retries hanging again", interval=0.2)
            assert ctl.running(), ctl.log_tail()
            assert px.held_chunks > 0
            for n in held:  # nothing reached the API server for them
                assert h.worker_pods(core, ns, n) == []

            # 3. SIGTERM while requests hang
            rc, took = ctl.stop(timeout=30)
            print(f"shutdown with the API server hanging: {took:.1f} s")
            assert rc == 0 and took < 30, (rc, took)

            # 4. answering again: a restart converges what was created during the hang
            px.hold_requests = False
            ctl.start(timeout=120)
            for n in held + first:
                h.wait_phase(custom, ns, n, "Running", timeout=120)
            for n in held + first:
                assert len(h.worker_pods(core, ns, n)) == 1, n
            rc, took = ctl.stop(timeout=30)
            assert rc == 0
        finally:
            ctl.close()
