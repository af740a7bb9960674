"""Issue 5 test 9: SIGKILL the controller at random points while 50 Workers are being created,
restart it each time; it converges to exactly one Pod per Worker, every Pod belongs to a
Worker, every Worker reaches Running (kube-scheduler and kwok run the Pods)."""

from __future__ import annotations

import random
import threading
import time

import controller_harness as h

N_WORKERS = 50
KILLS = 3


def test_sigkill_during_creation_converges(tb, api, core, custom, namespace):
    ns = namespace
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    print(f"seed={seed}")
    names = [f"crash-{i:02d}-{h.unique_suffix(4)}" for i in range(N_WORKERS)]
    with h.controller_for(tb, core, ns, f"ctl-{h.unique_suffix()}", env={"HICLAW_CONCURRENCY": "4"}) as ctl:
        created: list[str] = []

        def creator():
            for n in names:
                h.create_worker(custom, ns, n, env={"IDX": n})
                created.append(n)
                time.sleep(rnd.uniform(0.0, 0.06))

        t = threading.Thread(target=creator, daemon=True)
        t0 = time.monotonic()
        t.start()
        kills = []
        for k in range(KILLS):
            time.sleep(rnd.uniform(0.3, 1.5))
            ctl.kill()
            kills.append((round(time.monotonic() - t0, 2), len(created)))
            time.sleep(rnd.uniform(0.0, 0.5))
            ctl.start()
        t.join(60)
        assert not t.is_alive() and len(created) == N_WORKERS
        print(f"kills at (s, workers created so far): {kills}")

        def converged():
            ws = h.list_workers(custom, ns)
            if len(ws) != N_WORKERS:
                return False
            return all((w.get("status") or {}).get("phase") == "Running" for w in ws)

        h.wait_for_value(converged, 120, "all Workers Running")
        took = time.monotonic() - t0
        print(f"converged {N_WORKERS} Workers in {took:.1f}s after {KILLS} SIGKILLs")

        ws = {w["metadata"]["name"]: w for w in h.list_workers(custom, ns)}
        pods = h.worker_pods(core, ns)
        by_worker: dict = {}
        for p in pods:
            by_worker.setdefault(p.metadata.labels["hiclaw.io/worker"], []).append(p)
        assert set(by_worker) == set(ws), (set(by_worker) ^ set(ws))
        for n, ps in by_worker.items():
            assert len(ps) == 1, (n, [p.metadata.name for p in ps])
            p = ps[0]
            assert p.metadata.name == f"hiclaw-worker-{n}"
            assert p.metadata.deletion_timestamp is None
            assert p.metadata.owner_references[0].uid == ws[n]["metadata"]["uid"]
            assert {e.name: e.value for e in p.spec.containers[0].env}["IDX"] == n
        for n, w in ws.items():
            assert h.FINALIZER in w["metadata"]["finalizers"]
            assert h.condition(w, "Ready")["status"] == "True"
            assert w["status"]["observedGeneration"] == w["metadata"]["generation"]
        sas = core.list_namespaced_service_account(ns, label_selector="hiclaw.io/worker").items
        assert sorted(s.metadata.name for s in sas) == sorted(f"hiclaw-worker-{n}" for n in ws)
        # ReservedEnvIgnored etc. aside: no Worker got a second "Created" Pod Event for a Pod
        # that was not deleted in between (a duplicate create would have been a 409 anyway).
        ctl.stop()
